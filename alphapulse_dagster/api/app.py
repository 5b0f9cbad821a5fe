"""The FastAPI application: webhook ingestion and the read API (SPEC §11, §16).

``create_app(settings)`` builds it; ``alphapulse serve`` runs it under uvicorn. Startup
opens the engine, starts the group-commit writer (which replays any spooled events in the
background, so the server answers at once) and the reject recorder, and warns once when no
webhook secret is configured.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from alphapulse_dagster.api import analytics, desk, desk_reads, health_reads, signal_reads, webhooks
from alphapulse_dagster.api.flood_gate import FloodGate
from alphapulse_dagster.api.rejects import RejectRecorder
from alphapulse_dagster.api.settings import ApiSettings
from alphapulse_dagster.api.writer import EventWriter
from alphapulse_dagster.db.engine import make_engine, redacted
from alphapulse_dagster.webhooks.reject_budget import RejectBudget
from alphapulse_dagster.webhooks.spool import STORAGE_UNAVAILABLE, Spool

log = logging.getLogger(__name__)

DESCRIPTION = """
TradingView webhooks land in the append-only `signal_events` log (group commit, durable
before the 200; spooled and replayed when the database is down). The read API serves the
signal registry, each signal's event timeline, gaps, field provenance and audit trail, the
health report, the MTF metrics and the strategy evaluation (`/analytics/strategies`).
Read endpoints need `Authorization: Bearer <token>` when `ALPHAPULSE_API_TOKEN` is set;
the webhook uses the shared secret in its body.
The desk's screen is at `/`.
"""


def _engine_for(settings: ApiSettings) -> Engine:
    url = settings.database_url
    if url.startswith("postgresql"):
        # fail fast when Postgres is unreachable: the webhook spools instead of waiting
        return make_engine(
            url,
            connect_args={"connect_timeout": settings.db_connect_timeout},
            pool_timeout=5,
        )
    return make_engine(url)


def create_app(settings: ApiSettings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The app. ``settings`` default to the environment (:meth:`ApiSettings.from_env`);
    ``engine`` defaults to one built from ``settings.database_url``."""
    settings = settings or ApiSettings.from_env()
    owns_engine = engine is None
    app_engine = engine if engine is not None else _engine_for(settings)
    # one budget: the recorder rations reject rows by it, the gate turns rationed sources away
    reject_budget = RejectBudget(settings.reject_limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.webhook_secret:
            log.warning(
                "ALPHAPULSE_WEBHOOK_SECRET is not set: webhooks are accepted without a secret"
            )
        log.info(
            "API on %s, spool %s", redacted(str(app_engine.url)), settings.spool_path.resolve()
        )
        writer = EventWriter(
            app_engine,
            Spool(settings.spool_path),
            write_timeout=settings.write_timeout,
            timeouts=settings.write_timeouts,
        )
        rejects = RejectRecorder(app_engine, reject_budget, timeouts=settings.write_timeouts)
        app.state.writer = writer
        app.state.rejects = rejects
        await writer.start()
        await rejects.start()
        # Everything allocated so far (FastAPI, SQLAlchemy, pydantic) lives as long as the
        # process: move it out of the collector's reach so full collections stay short
        # (they stalled the writer for ~80 ms at a time under load).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await writer.stop()
            await rejects.stop()
            if owns_engine:
                app_engine.dispose()

    app = FastAPI(
        title="AlphaPulse API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by desk.mount_desk
        redoc_url=None,  # ReDoc loads from a CDN
    )
    app.state.settings = settings
    app.state.engine = app_engine
    app.add_middleware(FloodGate, budget=reject_budget, settings=settings)
    app.include_router(webhooks.router)
    app.include_router(signal_reads.router)
    app.include_router(health_reads.router)
    app.include_router(analytics.router)
    app.include_router(health_reads.open_router)
    app.include_router(desk_reads.router)
    desk.mount_desk(app)

    async def storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("read failed, database unavailable: %s", type(exc).__name__)
        return JSONResponse({"detail": "storage unavailable"}, status_code=503)

    for error in STORAGE_UNAVAILABLE:
        app.add_exception_handler(error, storage_unavailable)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn factory: ``uvicorn --factory alphapulse_dagster.api.app:create_app_from_env``."""
    return create_app(ApiSettings.from_env())
