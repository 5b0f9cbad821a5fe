"""Benchmark: the desk's All Signals view with 100,000 signals in Postgres (SPEC §18).

Seeds a scratch Postgres database (migrated with the shipped revisions) with 100,000
registry rows — 70 % TradingView over 20 symbols, 30 % AlphaPulse with their
``ai_signals_mtf`` rows over 5 entry strategies, every status, a third with open gaps —
starts a real ``alphapulse serve`` on it, and drives Debian's chromium (Playwright) to the
All Signals view:

- **usable**: from navigation (or from changing a filter) until the table shows the page's
  rows, for no filter and each filter (status, source, symbol, direction, strategy, time)
  and the next keyset page; the median of ``--repeat`` runs each;
- **API**: the same requests' ``GET /signals`` server round trip (median), and the
  query plan of each (whether Postgres reads an index);
- **page weight**: the bytes of every response of a cold load of ``/#/signals``.

Run (the box is shared: take the lock):

    flock /tmp/bench.lock env PYTHONPATH=. .venv/bin/python bench/bench_desk.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alphapulse_dagster.api.signal_reads import signal_page_query
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from tests.desk_support import chromium
from tests.live_server import LiveServer

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
N_SIGNALS = 100_000

# set-based seeding: one statement per table
SEED_SIGNALS = """
INSERT INTO signals (signal_id, source, trade_id, symbol, direction, timeframe, status,
  status_reason, status_confidence, signal_time, created_at, confirmed_at, entry_price,
  stop_loss, targets, mfe, mae, exit_price, exit_reason, closed_at, health_score,
  field_provenance, data_confidence, first_event_id, last_event_id, updated_at)
SELECT
  CASE WHEN i % 10 < 7 THEN 'SYM' || (i % 20) || ':' || lpad(i::text, 8, '0') || '_LONG'
       ELSE md5(i::text)::uuid::text END,
  CASE WHEN i % 10 < 7 THEN 'tradingview' ELSE 'alphapulse' END,
  CASE WHEN i % 10 < 7 THEN lpad(i::text, 8, '0') || '_LONG' END,
  'SYM' || (i % 20),
  CASE WHEN i % 2 = 0 THEN 'LONG' ELSE 'SHORT' END,
  '1h',
  (ARRAY['PENDING','CONFIRMED','CLOSED','CLOSED','CLOSED','CANCELLED'])[1 + i % 6],
  NULL, 1.0,
  t, t, t + interval '5 minutes', 100 + i % 50, 95 + i % 50, '[110, 120]', 1.2, 0.4,
  CASE WHEN i % 6 IN (2, 3, 4) THEN 108 END, CASE WHEN i % 6 IN (2, 3, 4) THEN 'TARGET' END,
  CASE WHEN i % 6 IN (2, 3, 4) THEN t + interval '6 hours' END,
  CASE WHEN i % 3 = 0 THEN 75 ELSE 100 END,
  '{"entry_price": {"tier": "event", "confidence": 1.0, "source": "ENTRY"}}', 1.0,
  i * 3, i * 3 + 2, t
FROM (SELECT i, timestamptz '2024-01-01' + i * interval '7 minutes' AS t
      FROM generate_series(1, :n) AS i) AS s
"""
SEED_MTF = """
INSERT INTO ai_signals_mtf (signal_id, symbol, direction, signal_timeframe, entry_timeframe,
  timestamp, signal_confidence, model_heads_analysis, market_price, entry_price, stop_loss,
  take_profits, targets_r, risk_reward_ratio, entry_strategy, entry_pattern,
  entry_confidence, atr, entry_improvement_bps, htf_alignment, status, expires_at, created_at)
SELECT s.signal_id, s.symbol, s.direction, '4h', '1h', s.signal_time, 0.7, '{}', 100, 100, 95,
  '[110]', '[2.0]', 2.0,
  (ARRAY['FIBONACCI_618','ORDER_BLOCK','LIQUIDITY_SWEEP','VWAP_RETEST','MARKET_ENTRY'])
    [1 + (s.first_event_id / 3) % 5],
  'NO_KEY_LEVEL', 0.5, 1.0, 0.0, '{}', 'CLOSED', s.signal_time, s.signal_time
FROM signals s WHERE s.source = 'alphapulse'
"""
SEED_GAPS = """
INSERT INTO signal_gaps (signal_id, gap_type, kind, weight, fillable, detected_at)
SELECT signal_id, 'no_signal_created', 'actionable', 15, false, updated_at
FROM signals WHERE first_event_id % 9 = 0
"""

CASES: list[tuple[str, dict[str, str]]] = [
    ("no filter", {}),
    ("status=PENDING", {"status": "PENDING"}),
    ("source=alphapulse", {"source": "alphapulse"}),
    ("symbol=SYM7", {"symbol": "SYM7"}),
    ("direction=SHORT", {"direction": "SHORT"}),
    ("strategy=ORDER_BLOCK", {"strategy": "ORDER_BLOCK"}),
    ("one day (since/until)", {"since": "2024-06-01T00:00:00Z", "until": "2024-06-02T00:00:00Z"}),
    ("symbol+status+direction", {"symbol": "SYM3", "status": "CLOSED", "direction": "LONG"}),
    ("rare symbol (none)", {"symbol": "NOPE"}),
]


def seed(url: str, n: int) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(SEED_SIGNALS), {"n": n})
        connection.execute(sa.text(SEED_MTF))
        connection.execute(sa.text(SEED_GAPS))
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def plans(url: str) -> dict[str, str]:
    """The top plan node of each case's first-page query: index or sequential scan."""
    engine = make_engine(url)
    found = {}
    with engine.connect() as connection:
        for name, params in CASES:
            query = _page_query(params)
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            rows = connection.exec_driver_sql(f"EXPLAIN ANALYZE {compiled}").all()
            text = "\n".join(r[0] for r in rows)
            scans = sorted(
                {
                    line.strip().split(" on ")[0].lstrip("-> ").split("  ")[0]
                    for line in text.splitlines()
                    if " on " in line and "Scan" in line
                }
            )
            total = text.splitlines()[-1].strip()
            found[name] = f"{'; '.join(scans)} ({total})"
    engine.dispose()
    return found


def _page_query(params: dict[str, str]) -> Any:
    since, until = params.get("since"), params.get("until")
    return signal_page_query(
        status=params.get("status"),
        symbol=params.get("symbol"),
        source=params.get("source"),
        direction=params.get("direction"),
        strategy=params.get("strategy"),
        since=datetime.fromisoformat(since) if since else None,
        until=datetime.fromisoformat(until) if until else None,
        limit=50,
    )


def api_times(server: LiveServer, repeat: int) -> dict[str, float]:
    out = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name, params in CASES:
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                client.get("/signals", params={**params, "limit": 50}).raise_for_status()
                samples.append(time.perf_counter() - start)
            out[name] = statistics.median(samples)
        first = client.get("/signals", params={"limit": 50}).json()
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            client.get("/signals", params={"limit": 50, "cursor": first["next_cursor"]})
            samples.append(time.perf_counter() - start)
        out["next page (keyset)"] = statistics.median(samples)
    return out


def browser_times(server: LiveServer, repeat: int) -> tuple[dict[str, float], int, int]:
    """Seconds until the table shows its rows; page weight (bytes, requests) of a cold load."""
    out: dict[str, list[float]] = {}
    weight, requests = 0, 0
    with chromium() as browser:
        for run in range(repeat):
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            responses: list[Any] = []

            def record(response: Any, responses: list[Any] = responses) -> None:
                responses.append(response)

            page.on("response", record)
            start = time.perf_counter()
            page.goto(server.url + "/#/signals")
            page.wait_for_selector("#signals-body tr[data-signal-id]")
            out.setdefault("open All Signals (cold load)", []).append(time.perf_counter() - start)
            page.wait_for_load_state("networkidle")
            page.remove_listener("response", record)
            if run == 0:
                bodies = [len(r.body()) for r in responses if r.ok]
                weight, requests = sum(bodies), len(bodies)
            for name, params in CASES[1:]:
                page.evaluate(
                    "f => { const s = window.__desk.signals; s.filters = f; s.cursors = [null]; }",
                    params,
                )
                marker = page.evaluate("document.getElementById('signals-body').dataset.loaded")
                start = time.perf_counter()
                page.evaluate("location.hash = '#/signals?' + Date.now()")
                page.wait_for_function(
                    "m => { const b = document.getElementById('signals-body');"
                    " return b && b.dataset.loaded && b.dataset.loaded !== m; }",
                    arg=marker,
                )
                out.setdefault(name, []).append(time.perf_counter() - start)
            page.evaluate("window.__desk.signals.filters = {}; location.hash = '#/signals?x'")
            page.wait_for_selector("#signals-body tr[data-signal-id]")
            marker = page.evaluate("document.getElementById('signals-body').dataset.loaded")
            start = time.perf_counter()
            page.click("#page-next")
            page.wait_for_function(
                "m => document.getElementById('signals-body').dataset.loaded !== m", arg=marker
            )
            out.setdefault("next page (keyset)", []).append(time.perf_counter() - start)
            context.close()
    return {k: statistics.median(v) for k, v in out.items()}, weight, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signals", type=int, default=N_SIGNALS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--admin-url", default=PG_ADMIN)
    args = parser.parse_args()
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    name = f"alphapulse_bench_desk_{int(time.time())}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(args.admin_url).set(database=name).render_as_string(False)
    work = Path(tempfile.mkdtemp(prefix="bench_desk_"))
    server = None
    try:
        upgrade(url)
        start = time.perf_counter()
        seed(url, args.signals)
        print(f"seeded {args.signals:,} signals in {time.perf_counter() - start:.1f} s")
        server = LiveServer(
            {"ALPHAPULSE_DATABASE_URL": url, "ALPHAPULSE_SPOOL_PATH": str(work / "spool")},
            work / "serve.log",
        ).start()
        api = api_times(server, args.repeat * 3)
        usable, weight, requests = browser_times(server, args.repeat)
        query_plans = plans(url)
        print(f"page weight of a cold /#/signals load: {weight:,} bytes in {requests} responses")
        print("| case | table shows rows (browser) | GET /signals | plan |")
        print("|---|---:|---:|---|")
        for case in [*usable]:
            query = "no filter" if case.startswith("open") else case
            plan, round_trip = query_plans.get(query, ""), api.get(query, float("nan"))
            print(
                f"| {case} | {usable[case] * 1000:.0f} ms | {round_trip * 1000:.0f} ms | {plan} |"
            )
        print(json.dumps({"usable_s": usable, "api_s": api, "weight_bytes": weight}))
    finally:
        if server is not None:
            server.stop()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
