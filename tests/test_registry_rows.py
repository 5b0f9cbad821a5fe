"""A sync cycle reads the registry rows in scope once and keeps them current as its steps
write (``registry_rows.RegistryRows``). After every kind of cycle the cached rows must equal
the stored ones, column by column — else a later step would have decided on stale data."""

from __future__ import annotations

import random
from datetime import timedelta

import sqlalchemy as sa
from hybrid_sync_support import CONFIG, T0, append, created, entry, event, load_candles

from alphapulse_dagster.registry_rows import RegistryRows
from alphapulse_dagster.sync_cycle import run_sync

H = timedelta(hours=1)
NOW = T0 + timedelta(days=3)


def _cycle(engine: sa.Engine, **kwargs: object) -> RegistryRows:
    cache = RegistryRows()
    report = run_sync(engine, CONFIG, cache=cache, **kwargs)  # type: ignore[arg-type]
    with engine.connect() as conn:
        assert cache.stale(conn) == {}
    assert report.reconcile.signals_seen > 0
    return cache


def test_the_cycle_cache_equals_the_database_after_every_step(engine: sa.Engine) -> None:
    rng = random.Random(5)
    start = T0 - timedelta(days=2)
    # hourly BTCUSDT candles over the whole period: Tier 1 measures (and re-measures) trades
    bars = []
    for _ in range(24 * 6):
        low = 90.0 + rng.random() * 5
        bars.append((low + 2, low + 4 + rng.random() * 4, low, low + 3))
    load_candles(engine, "BTCUSDT", "1h", start, bars)
    trades = [(f"{start + n * 3 * H:%Y%m%d_%H%M%S}_LONG_{n}", start + n * 3 * H) for n in range(24)]
    first = []
    for n, (tid, at) in enumerate(trades):
        if n % 4:
            first.append(created(tid, at))
        if n % 3:  # a third stay PENDING: some expire
            first.append(entry(tid, at + H))
        if n % 5 == 0:
            first.append(event("MFE_UPDATE", tid, at + 2 * H, mfe=0.4, mae=0.1))
        if n % 6 == 1:
            first.append(event("EXIT", tid, at + 5 * H, exit_price=101.0, exit_reason="TARGET"))
    append(engine, *first)
    # first cycle: the projection inserts every row (inserts are not cached; read later)
    cache = _cycle(engine, now=NOW, sync_run_id="c1")
    assert len(cache) == len({e.signal_id for e in first}) == 23  # trade 12 has no event

    # a sensor-style cycle: resumable MFE updates, late SIGNAL_CREATED (full re-fold),
    # an explicit cancel, a late ENTRY re-opening an inferred expiry, an exit
    later = []
    for n, (tid, at) in enumerate(trades):
        if n % 4 == 0:
            later.append(created(tid, at - H))
        elif n % 3 == 0:
            later.append(entry(tid, NOW - 2 * H))
        elif n % 5 == 2:
            later.append(event("MFE_UPDATE", tid, NOW - H, mfe=0.9, mae=0.3))
        elif n % 7 == 1:
            later.append(event("EXIT", tid, NOW - H, exit_price=99.0, exit_reason="STOP"))
    later.append(event("CANCELLED", trades[3][0], NOW - H, reason="user"))
    append(engine, *later)
    ids = sorted({e.signal_id for e in later})
    cache = _cycle(engine, now=NOW + H, sync_run_id="c2", signal_ids=ids)
    assert len(cache) >= len(ids)

    # scheduled cycles (time-driven scopes), then a full one
    _cycle(engine, now=NOW + 30 * H, sync_run_id="c3")
    _cycle(engine, now=NOW + 31 * H, sync_run_id="c4", full=True)


def test_past_its_limit_the_cache_reads_without_keeping(engine: sa.Engine) -> None:
    trades = [(f"20250106_{n:02d}0000_LONG_{n}", T0 + n * H) for n in range(6)]
    append(engine, *(created(tid, at) for tid, at in trades))
    run_sync(engine, CONFIG, NOW, "warm")
    ids = [f"BTCUSDT:{tid}" for tid, _ in trades]
    cache = RegistryRows(limit=4)
    with engine.connect() as conn:
        assert set(cache.load(conn, ids[:3])) == set(ids[:3])
        assert len(cache) == 3
        rows = cache.load(conn, ids)  # 3 more would pass the limit: read, not kept
        assert set(rows) == set(ids) and len(cache) == 3
        assert rows[ids[0]] is cache.load(conn, ids[:1])[ids[0]]
