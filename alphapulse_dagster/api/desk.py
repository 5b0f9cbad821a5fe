"""The desk's screen (SPEC §18) and the offline API docs: static files served by the app.

``GET /`` is one hand-written HTML page (``static/desk.html``) whose plain JavaScript reads
the JSON API with the bearer token the user typed once; nothing is built, nothing comes
from a CDN. The vendored libraries (``static/vendor/``, pinned from the npm registry, each
with its licence) are TradingView's lightweight-charts for the candle chart and
swagger-ui-dist for ``/docs``.

The page itself carries no data, so it is open; every figure on it comes from the read API,
which demands the token when ``ALPHAPULSE_API_TOKEN`` is set.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/static"
SWAGGER = f"{STATIC_URL}/vendor/swagger-ui"

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=FileResponse)
def desk_page() -> FileResponse:
    """The desk: health, All Signals, one signal, strategy evaluation (hash-routed)."""
    return FileResponse(STATIC_DIR / "desk.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs", response_class=HTMLResponse)
def swagger_docs(request: Request) -> HTMLResponse:
    """Swagger UI from the app's own copy of swagger-ui-dist: works without internet."""
    return get_swagger_ui_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{request.app.title} — docs",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        # the default validator badge calls an online service
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )


def mount_desk(app: FastAPI) -> None:
    """Add the page, the docs and the static files to ``app`` (built with ``docs_url=None``
    and ``redoc_url=None``: ReDoc would load from a CDN)."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
