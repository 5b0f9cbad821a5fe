"""The read API's reports: the health report (``GET /health``), the MTF monitoring
metrics (``GET /metrics/mtf``) and liveness (``GET /healthz``, open, no token)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import Connection, select, text
from starlette.concurrency import run_in_threadpool

from alphapulse_dagster.analytics.strategy_performance import outcome_metrics
from alphapulse_dagster.api.auth import token_router
from alphapulse_dagster.api.query_checks import app_engine
from alphapulse_dagster.api.read_models import HealthReport, Liveness
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.tables import signal_health_metrics
from alphapulse_dagster.signals.mtf_metrics import mtf_metrics

router = token_router()
open_router = APIRouter()

HEALTHZ_PING_SECONDS = 1.0


def latest_health(connection: Connection) -> dict[str, Any]:
    """The latest persisted health report, or the zero report before the first sync."""
    row = (
        connection.execute(
            select(signal_health_metrics)
            .order_by(
                signal_health_metrics.c.measured_at.desc(),
                signal_health_metrics.c.metric_id.desc(),
            )
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return {
            "total_gaps": 0,
            "health_score": 100.0,
            "gap_breakdown": {},
            "signal_coverage": None,
            "data_confidence": None,
            "manual_intervention": 0,
            "signals": 0,
            "measured_at": None,
            "sync_run_id": None,
        }
    return {
        "total_gaps": row["total_gaps"],
        "health_score": row["health_score"],
        "gap_breakdown": row["gap_breakdown"] or {},
        "signal_coverage": row["signal_coverage"],
        "data_confidence": row["data_confidence"],
        "manual_intervention": row["manual_intervention"],
        "signals": row["total_signals"],
        "measured_at": row["measured_at"],
        "sync_run_id": row["sync_run_id"],
    }


# --- routes -------------------------------------------------------------------------------


@router.get("/health", response_model=HealthReport, tags=["health"], summary="Health report")
def get_health(request: Request) -> dict[str, Any]:
    with app_engine(request).connect() as connection:
        report = latest_health(connection)
    return {**report, "webhook_spool": request.app.state.writer.spool.status()}


@router.get(
    "/metrics/mtf",
    tags=["metrics"],
    summary="MTF monitoring metrics",
    description="Strategy distribution, average entry confidence, average R:R, average "
    "signal confidence, refinement success rate, fill rate (refined limits only), mean entry "
    "improvement (bps), signals in the last 24 h; from the outcomes: the fill rate of "
    "refined limits read from candles and the paired refined-vs-market ΔR with its interval.",
)
def get_mtf_metrics(request: Request) -> dict[str, Any]:
    with app_engine(request).connect() as connection:
        figures = mtf_metrics(connection, utcnow())
        figures.update(outcome_metrics(connection))
        return figures


@open_router.get("/healthz", response_model=Liveness, tags=["health"], summary="Liveness")
async def healthz(request: Request) -> dict[str, Any]:
    """Always 200 while the process serves, within about a second; ``degraded`` when the
    database does not answer (webhooks are then spooled, not lost)."""

    def ping() -> bool:
        try:
            with app_engine(request).connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    try:  # a hung database must not hang the liveness probe
        database_ok = await asyncio.wait_for(run_in_threadpool(ping), HEALTHZ_PING_SECONDS)
    except TimeoutError:
        database_ok = False
    writer = request.app.state.writer
    return {
        "status": "ok" if database_ok else "degraded",
        "database": "ok" if database_ok else "unavailable",
        "spool_pending_bytes": writer.spool.pending(),
        "spool_dead_letters": writer.spool.dead_letters(),
        "rejects_dropped": request.app.state.rejects.dropped,
    }
