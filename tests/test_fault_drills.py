"""Fault drills against the real services (SPEC §14): each one asserts that nothing was
lost or duplicated and that the next cycle converges to the state of a clean run.

- Redis stopped during signal generation, restarted, then flushed while a run is storing.
- PostgreSQL restarted in the middle of an ``alphapulse sync``.
- Two sync cycles overlapping (two schedule ticks of a slow sync), on the CLI and as two
  overlapping Dagster runs of the sync assets.

The API drills (``kill -9`` + database unavailable; hostile input on the real server) are
in ``tests/test_webhook_server_e2e.py``.

The PostgreSQL restart cuts every connection on the server; it always restarts the cluster
in a ``finally`` and waits for ``pg_isready``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import ACTIVE_STATUSES, ai_signals_mtf, signal_events
from alphapulse_dagster.signals.mtf_run import record_window
from alphapulse_dagster.signals.signal_cache import SignalCache
from alphapulse_dagster.signals.trade_management import TradeRule
from assets import hybrid_sync
from resources import ConfigResource, DatabaseResource
from sensors.hybrid_sync import sync_run_config
from tests.conftest import _drop_pg_database, _new_pg_database, _pg_url
from tests.drill_support import (
    PrivateRedis,
    audit_mismatches,
    cloned_database,
    restart_postgres,
    seed,
    snapshot,
)
from tests.hybrid_sync_support import load_candles, materialized
from tests.signal_factory import T0, refined_signal

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(REPO_ROOT / "config")
ENTRY_VALID_BARS = 12  # 1h entry bars: a signal stays active 12 h without candles


def _sync_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "ALPHAPULSE_DATABASE_URL": url,
        "ALPHAPULSE_CONFIG_DIR": CONFIG_DIR,
        "ALPHAPULSE_REDIS_URL": "",
    }


def _cli_sync(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alphapulse_dagster.cli", "sync", "--json", *args],
        env=_sync_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def _assert_converged(drilled: str, clean: str) -> None:
    a, b = snapshot(drilled), snapshot(clean)
    assert a["log"] == b["log"], "event log differs (lost or doubled events)"
    assert a["audit"] == b["audit"], "audit trail differs (double or missing application)"
    assert a["gaps"] == b["gaps"]
    diff = [
        k
        for k in a["registry"].keys() | b["registry"].keys()
        if a["registry"].get(k) != b["registry"].get(k)
    ]
    assert not diff, f"{len(diff)} registry rows differ, e.g. {diff[:3]}"
    assert audit_mismatches(drilled) == []


# --- Redis -----------------------------------------------------------------------------------

SYMBOLS = [f"DRILL{n:02d}USD" for n in range(12)]


def _windows() -> list[tuple[Any, pd.DataFrame]]:
    """Three 4h windows: W1 LONGs; W2 the same LONGs again (still active ⇒ duplicates) plus
    new SHORTs; W3 (after every W1/W2 signal expired) LONGs and SHORTs again ⇒ all new."""

    def frame(at: Any, directions: tuple[str, ...]) -> pd.DataFrame:
        rows = [refined_signal(s, d, at) for d in directions for s in SYMBOLS]
        return pd.DataFrame(rows)

    w1, w2, w3 = T0, T0 + timedelta(hours=4), T0 + timedelta(hours=20)
    return [
        (w1, frame(w1, ("LONG",))),
        (w2, frame(w2, ("LONG", "SHORT"))),
        (w3, frame(w3, ("LONG", "SHORT"))),
    ]


class _Faulty(SignalCache):
    """A real SignalCache that runs ``faults[(method, n)]`` right after its n-th call of
    ``active_signals`` (the bar's Redis check, before the database transaction) or
    ``remember_many`` (after the commit) — so each fault lands in the middle of a window's
    storing, not between windows."""

    def __init__(self, url: str, faults: dict[tuple[str, int], Any]) -> None:
        super().__init__(url, timeout_seconds=0.2, backoff_seconds=0.2)
        self._faults = faults
        self._calls: dict[str, int] = {"active_signals": 0, "remember_many": 0}

    def _after(self, method: str) -> None:
        self._calls[method] += 1
        fault = self._faults.get((method, self._calls[method]))
        if fault is not None:
            fault()

    def active_signals(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        found = super().active_signals(pairs)
        self._after("active_signals")
        return found

    def remember_many(self, documents: Any) -> bool:
        ok = super().remember_many(documents)
        self._after("remember_many")
        return ok


def _record(engine: sa.Engine, cache: SignalCache, window: tuple[Any, pd.DataFrame]) -> Any:
    window_end, frame = window
    return record_window(
        engine, cache, frame, window_end + timedelta(hours=4), TradeRule(ENTRY_VALID_BARS), T0
    )


def _flat_candles(url: str) -> None:
    """Flat 1h bars at the market price: no refined entry (below/above it) ever fills, so
    every signal expires after ``ENTRY_VALID_BARS`` bars and frees its symbol+direction."""
    engine = make_engine(url)
    for symbol in SYMBOLS:
        load_candles(engine, symbol, "1h", T0 - timedelta(hours=4), [(8000.0,) * 4] * 40)
    engine.dispose()


def _mtf_state(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                ai_signals_mtf.c.signal_id,
                ai_signals_mtf.c.symbol,
                ai_signals_mtf.c.direction,
                ai_signals_mtf.c.status,
                ai_signals_mtf.c.status_reason,
            )
        ).all()
        active_dupes = conn.execute(
            sa.select(ai_signals_mtf.c.symbol, ai_signals_mtf.c.direction)
            .where(ai_signals_mtf.c.status.in_(ACTIVE_STATUSES))
            .group_by(ai_signals_mtf.c.symbol, ai_signals_mtf.c.direction)
            .having(sa.func.count() > 1)
        ).all()
        created = conn.execute(
            sa.select(signal_events.c.signal_id, signal_events.c.event_type)
        ).all()
    engine.dispose()
    return {
        "signals": sorted(tuple(r) for r in rows),
        "active_dupes": active_dupes,
        "events": sorted(tuple(r) for r in created),
    }


@pytest.mark.redis
@pytest.mark.postgres
def test_redis_stopped_then_flushed_mid_run_stores_everything_once(
    pg_admin_engine: sa.Engine, redis_url: str
) -> None:
    """A private redis-server is killed while the second window is storing, restarted
    empty before the third, and FLUSHDB'd in the middle of the third. Every window's
    signals are stored exactly as with no Redis at all, never two active signals for a
    symbol+direction, and the cache refills with the signals stored after the flush."""
    names = [_new_pg_database(pg_admin_engine) for _ in range(2)]
    drilled, clean = (_pg_url(n) for n in names)
    redis = PrivateRedis().start()
    n = len(SYMBOLS)
    try:
        from alphapulse_dagster.db.migrate import upgrade

        for url in (drilled, clean):
            upgrade(url)
            _flat_candles(url)
        clean_engine = make_engine(clean)
        for window in _windows():
            _record(clean_engine, SignalCache(None), window)
        clean_engine.dispose()

        def restart_redis() -> None:  # same port, empty (no persistence), as after a crash
            redis.start()
            time.sleep(0.25)  # past the cache's back-off: the next call tries Redis again

        flusher: list[Any] = []
        faults = {
            ("active_signals", 2): redis.kill,  # window 2, mid-store: Redis dies
            ("remember_many", 2): restart_redis,  # window 3 starts against a fresh Redis …
            # … which is flushed between its Redis check and its commit
            ("active_signals", 3): lambda: flusher.append(redis.client().flushdb()),
        }
        cache = _Faulty(redis.url, faults)
        engine = make_engine(drilled)
        w1, w2, w3 = (_record(engine, cache, window) for window in _windows())
        assert cache.stats.errors >= 1  # it noticed, degraded to the database, did not raise
        assert w1.store.stored == n
        assert (w2.store.stored, w2.store.duplicates_skipped) == (n, n)
        assert (w3.store.stored, w3.store.duplicates_skipped) == (2 * n, 0)
        assert flusher == [True]
        # the next tick re-runs the last window: nothing stored twice
        again = _record(engine, cache, _windows()[2])
        assert (again.store.stored, again.store.already_stored) == (0, 2 * n)
        engine.dispose()

        # the cache refilled after the flush: those signals are there, with their TTL, and
        # the active marker of each symbol+direction points at the database's active signal
        for signal_id in w3.store.stored_ids:
            assert cache.cached_signal(signal_id) is not None, signal_id
            assert 0 < (cache.ttl(signal_id) or 0) <= 3600
        state = _mtf_state(drilled)
        assert state["active_dupes"] == []
        assert state == _mtf_state(clean)
        cache.close()
    finally:
        redis.kill()
        for name in names:
            _drop_pg_database(pg_admin_engine, name)


# --- PostgreSQL restarted mid-sync -----------------------------------------------------------

SEEDED_SIGNALS = 3000  # ~9k events: a cold full sync takes a few seconds on the CI box
OVERLAP_SIGNALS = 1000


@pytest.fixture
def seeded_pg(pg_admin_engine: sa.Engine, request: pytest.FixtureRequest) -> Any:
    """A migrated database holding the seeded log (no sync yet), dropped afterwards;
    ``request.param`` = number of signals (default SEEDED_SIGNALS)."""
    from alphapulse_dagster.db.migrate import upgrade

    name = _new_pg_database(pg_admin_engine)
    url = _pg_url(name)
    try:
        upgrade(url)
        seed(url, getattr(request, "param", SEEDED_SIGNALS), utcnow())
        yield url
    finally:
        pg_admin_engine.dispose()  # its pooled connections may predate a restart
        _drop_pg_database(pg_admin_engine, name)


def _active_backend(admin: sa.Engine, application_name: str) -> bool:
    with admin.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                {"a": application_name},
            ).scalar()
        )


def _audit_rows(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM sync_audit_log")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_restart_mid_sync_fails_cleanly_and_next_sync_converges(
    pg_admin_engine: sa.Engine, seeded_pg: str
) -> None:
    with cloned_database(pg_admin_engine, seeded_pg) as clean:
        reference = _cli_sync(clean)
        assert reference.returncode == 0, reference.stderr[-2000:]
        clean_seconds = json.loads(reference.stdout)["seconds"]

        app_name = "alphapulse_drill_sync"
        drilled_url = f"{seeded_pg}?application_name={app_name}"
        process = subprocess.Popen(
            [sys.executable, "-m", "alphapulse_dagster.cli", "sync", "--json"],
            env=_sync_env(drilled_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        try:
            # land the restart inside the cycle: once reconciliation has committed its
            # first chunk, or at ~80% of a clean cycle after the sync connected
            deadline = time.monotonic() + 60
            connected_at = None
            while time.monotonic() < deadline and process.poll() is None:
                if connected_at is None and _active_backend(pg_admin_engine, app_name):
                    connected_at = time.monotonic()
                if connected_at is not None and (
                    _audit_rows(seeded_pg) > 0
                    or time.monotonic() - connected_at > 0.8 * clean_seconds
                ):
                    break
                time.sleep(0.02)
            mid_run = process.poll() is None
            pg_admin_engine.dispose()
            restart_seconds = restart_postgres()
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            pg_admin_engine.dispose()
        assert mid_run, "the sync finished before the restart; raise SEEDED_SIGNALS"
        print(
            f"interrupted sync: exit {process.returncode}, {_audit_rows(seeded_pg)} audit rows, "
            f"restart {restart_seconds:.1f}s, clean cycle {clean_seconds:.1f}s"
        )

        # the interrupted run: failed with a clear message (or, if it got past the restart,
        # succeeded) — never hung, never a half-written signal
        if process.returncode != 0:
            assert process.returncode == 69, stderr[-3000:]  # EX_UNAVAILABLE
            assert "database error" in stderr, stderr[-2000:]
            assert "Traceback" not in stderr, stderr[-3000:]
        assert audit_mismatches(seeded_pg) == []

        # the next cycle converges to what one clean cycle produced
        again = _cli_sync(seeded_pg)
        assert again.returncode == 0, again.stderr[-2000:]
        _assert_converged(seeded_pg, clean)
        # and a further cycle changes nothing
        idle = _cli_sync(seeded_pg)
        assert idle.returncode == 0 and json.loads(idle.stdout)["fields_changed"] == 0


# --- two schedule ticks overlapping ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("seeded_pg", [OVERLAP_SIGNALS], indirect=True)
def test_two_overlapping_cli_syncs_apply_once(pg_admin_engine: sa.Engine, seeded_pg: str) -> None:
    """Two ``alphapulse sync`` started together (a slow tick and the next one): the second
    waits on the lock, then finds nothing left to do. Same state as one clean sync."""
    with cloned_database(pg_admin_engine, seeded_pg) as clean:
        assert _cli_sync(clean).returncode == 0
        both = [
            subprocess.Popen(
                [sys.executable, "-m", "alphapulse_dagster.cli", "sync", "--json", "--wait", "120"],
                env=_sync_env(seeded_pg),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO_ROOT,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=180) for p in both]
        assert [p.returncode for p in both] == [0, 0], [o[1][-1000:] for o in outputs]
        changed = sorted(json.loads(out)["fields_changed"] for out, _ in outputs)
        assert changed[0] == 0 and changed[1] > 0  # applied once, by one of them
        _assert_converged(seeded_pg, clean)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("seeded_pg", [OVERLAP_SIGNALS], indirect=True)
def test_two_overlapping_dagster_sync_runs_apply_once(
    pg_admin_engine: sa.Engine, seeded_pg: str
) -> None:
    """If the run queue's tag limit were missing, two runs of the sync assets would
    overlap; each cycle holds the sync lock and is idempotent, so the result is
    still one application (and the same as one clean ``alphapulse sync``)."""
    with cloned_database(pg_admin_engine, seeded_pg) as clean:
        assert _cli_sync(clean).returncode == 0
        selection = [
            hybrid_sync.hybrid_sync_cycle,
            hybrid_sync.reconciliation_monotonicity,
        ]
        resources = {
            "database": DatabaseResource(url=seeded_pg),
            "app_config": ConfigResource(config_dir=CONFIG_DIR),
        }
        full = sync_run_config({"full": True})
        results: list[dg.ExecuteInProcessResult] = []
        barrier = threading.Barrier(2)

        def tick() -> None:
            barrier.wait()
            results.append(
                dg.materialize(
                    selection, resources=resources, run_config=full, raise_on_error=False
                )
            )

        threads = [threading.Thread(target=tick) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert [r.success for r in results] == [True, True]
        changed = sorted(
            materialized(r, "reconciled_signals")[0].metadata["fields_changed"].value
            for r in results
        )
        assert changed[0] == 0 and changed[1] > 0
        _assert_converged(seeded_pg, clean)
