"""Daemon-driven end to end, as deployed (SPEC §13, issue 6): a Postgres-backed Dagster
instance from ``deploy/dagster.yaml`` in a temporary ``DAGSTER_HOME``, ``dagster api
grpc`` (code server), ``dagster-daemon run`` and ``alphapulse serve`` as separate
processes; the sensor and the schedule turned on with the ``dagster`` CLI; an ENTRY then a
SIGNAL_CREATED posted to the webhook; the reconciled fields (Tier 0) appear in
``GET /signals/{id}``. One measurement, bounded; ``bench/bench_e2e_latency.py`` takes the
median of several."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.migrate import upgrade
from tests.conftest import PG_ADMIN_URL
from tests.dagster_stack import (
    DaemonStack,
    database_url,
    entry_then_created_latency,
    scratch_databases,
    wait_daemon_healthy,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# The ≤ 15 s target (SPEC §13) is a benchmark figure (bench/bench_e2e_latency.py, median
# in bench/RESULTS.md), not a timed assertion: here the daemon must reconcile the signal
# by itself within a generous deadline, and the measured latency is reported.
DEADLINE_SECONDS = 60


@pytest.mark.timeout(240)
def test_webhook_to_reconciled_under_the_daemon(pg_admin_engine: sa.Engine, tmp_path: Path) -> None:
    with scratch_databases(PG_ADMIN_URL, "alphapulse_e2e_dagster", "alphapulse_e2e_app") as (
        instance_db,
        app_db,
    ):
        app_url = database_url(PG_ADMIN_URL, app_db)
        upgrade(app_url)
        stack = DaemonStack(tmp_path, PG_ADMIN_URL, instance_db, app_url)
        try:
            stack.start()
            stack.turn_on(sensors=("signal_created_sensor",), schedules=("hybrid_sync_schedule",))
            wait_daemon_healthy(stack)
            seconds, doc = entry_then_created_latency(
                stack.api, "20250106_120000_LONG", timeout=DEADLINE_SECONDS
            )
        finally:
            stack.stop()
    assert doc["htf_alignment"] == {"4h": "BULLISH", "1d": "NEUTRAL"}
    assert doc["session"] == "LONDON" and doc["market_state"] == "TRENDING"
    assert doc["confirmation_time"] == pytest.approx(1200.0)
    assert doc["field_provenance"]["htf_alignment"]["confidence"] == 1.0
    assert {e["event_type"] for e in doc["events"]} == {"ENTRY", "SIGNAL_CREATED"}
    assert any(a["field"] == "htf_alignment" and str(a["tier"]) == "0" for a in doc["audit"])
    print(f"webhook → reconciled under the daemon: {seconds:.1f}s (target 15 s, see bench)")
