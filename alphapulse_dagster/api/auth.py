"""Bearer-token protection of the read API (``ALPHAPULSE_API_TOKEN``; unset ⇒ open)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alphapulse_dagster.api.read_models import Unauthorized

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <ALPHAPULSE_API_TOKEN>` when the token is configured",
)


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> None:
    """FastAPI dependency: 401 unless the request carries the configured token."""
    expected: str | None = request.app.state.settings.api_token
    if not expected:
        return
    sent = credentials.credentials if credentials else ""
    if not sent or not hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def token_router() -> APIRouter:
    """A router whose every route needs the token, its 401 answer documented."""
    return APIRouter(
        dependencies=[Depends(require_token)],
        responses={
            401: {
                "model": Unauthorized,
                "description": "missing or wrong `Authorization: Bearer <token>` "
                "(only when ALPHAPULSE_API_TOKEN is set)",
            }
        },
    )
