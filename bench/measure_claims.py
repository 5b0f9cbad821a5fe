"""Measure the MTF seed's claims on the bundled history (issue 17 item 6, docs/claims.md).

Builds a fresh SQLite database from ``data/sample`` (BTCUSD and EURUSD, 1h), runs the MTF
pipeline over the whole history with the shipped configuration (signals, refinement,
storage, lifecycle), reads every outcome from the candles, then prints the strategy report
and the claims:

    PYTHONPATH=. .venv/bin/python bench/measure_claims.py [--db PATH] [--json]

The same figures come from ``alphapulse report`` and ``alphapulse report --claims`` on a
database the Dagster assets have filled.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from alphapulse_dagster.analytics.claims import format_claims, measure_claims
from alphapulse_dagster.analytics.outcome_store import compute_outcomes, write_outcomes
from alphapulse_dagster.analytics.strategy_performance import strategy_report
from alphapulse_dagster.cli.candles import import_candles
from alphapulse_dagster.cli.report import format_report
from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.paths import bundled_dir
from alphapulse_dagster.signals.mtf_run import generate_window, record_window, trade_rule
from alphapulse_dagster.signals.signal_cache import SignalCache

START, END = datetime(2017, 1, 1, tzinfo=UTC), datetime(2019, 12, 31, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default=".alphapulse/claims.db")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    path = Path(args.db)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    started = time.perf_counter()
    upgrade(url)
    import_candles(bundled_dir("sample"), url, progress=False)
    engine = make_engine(url)
    config = load_config()
    signals = generate_window(engine, config, START, END)
    record_window(engine, SignalCache(None), signals, END, trade_rule(config), END)
    write_outcomes(
        engine, compute_outcomes(engine, START, END, trade_rule(config), END), START, END
    )
    with engine.connect() as connection:
        by_strategy = strategy_report(connection)
        by_mode = strategy_report(connection, group_by="entry_mode")
        claims = measure_claims(connection, [s.symbol for s in config.symbols.enabled()])
    engine.dispose()
    if args.json:
        print(json.dumps({"entry_strategy": by_strategy, "entry_mode": by_mode, **claims},
                         indent=2, default=str))  # fmt: skip
        return
    seconds = time.perf_counter() - started
    print(f"{len(signals)} signals generated on the bundled history ({seconds:.0f} s)\n")
    print(format_report(by_strategy), "\n")
    print(format_report(by_mode), "\n")
    print(format_claims(claims))


if __name__ == "__main__":
    main()
