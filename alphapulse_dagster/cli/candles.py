"""``alphapulse import-candles PATH`` — load CSV candles (a file or a folder of
``{SYMBOL}_{timeframe}.csv``) into the database, with the coarser timeframes the config
needs derived by resampling. Validated against the candle contract first.

When ``DAGSTER_HOME`` is set, the Dagster instance there is told which daily ``candles``
partitions the import filled (``assets/candle_catalogue.py``, imported lazily: the core
never imports Dagster), so the catalogue shows them filled."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.market.candle_store import upsert_candles
from alphapulse_dagster.market.market_data import MarketDataError, read_candle_csv
from alphapulse_dagster.market.resample import closed_bars, resample_ohlcv
from alphapulse_dagster.market.timeframes import duration, is_timeframe, seconds

_FILE_NAME = re.compile(r"^(?P<symbol>[A-Za-z0-9.!_-]+?)_(?P<timeframe>\d+[mhdw])\.csv$")
_CHUNK = 2_000


def _files(path: Path) -> list[tuple[Path, str, str]]:
    candidates = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    found = []
    for file in candidates:
        match = _FILE_NAME.match(file.name)
        if not match or not is_timeframe(match["timeframe"]):
            if not path.is_dir():
                raise MarketDataError(
                    f"{file}: file name must be {{SYMBOL}}_{{timeframe}}.csv, e.g. BTCUSD_1h.csv"
                )
            continue
        found.append((file, match["symbol"], match["timeframe"]))
    return found


@dataclass
class CandleImport:
    """What an import wrote: rows in total and per UTC day of the bars' open time."""

    rows: int = 0
    rows_by_day: Counter[str] = field(default_factory=Counter)


def import_candles(path: Path, url: str | None = None, progress: bool = True) -> CandleImport:
    """Import every CSV under ``path``; returns the rows written, in total and per day."""
    from schemas.candles import CandleFrame  # the contract lives in schemas/

    config = load_config()
    wanted = {s.symbol: s for s in config.symbols.symbols}
    engine = make_engine(url)
    summary = CandleImport()
    try:
        for file, symbol, timeframe in _files(path):
            bars = read_candle_csv(file, symbol)
            CandleFrame.validate(bars, lazy=True)
            targets = [timeframe]
            if symbol in wanted:
                signal_tf = config.signal_timeframe(wanted[symbol])
                derived = {signal_tf, *config.higher_timeframes(signal_tf)}
                derived.add(config.entry_timeframe(wanted[symbol]))
                targets += sorted(
                    (tf for tf in derived if seconds(tf) > seconds(timeframe)), key=seconds
                )
            data_end = bars["open_time"].max() + duration(timeframe)
            with engine.begin() as connection:
                for tf in targets:
                    frame = bars
                    if tf != timeframe:
                        frame = closed_bars(resample_ohlcv(bars, tf), tf, data_end)
                    chunks = range(0, len(frame), _CHUNK)
                    for start in tqdm(
                        chunks, desc=f"{symbol} {tf}", unit="chunk", disable=not progress
                    ):
                        summary.rows += upsert_candles(
                            connection, frame.iloc[start : start + _CHUNK], tf
                        )
                    summary.rows_by_day.update(
                        frame["open_time"].dt.strftime("%Y-%m-%d").value_counts().to_dict()
                    )
    finally:
        engine.dispose()
    return summary


def _run(args: argparse.Namespace) -> int:
    import pandera.pandas as pa

    try:
        imported = import_candles(Path(args.path), args.url, progress=not args.quiet)
    except (MarketDataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except pa.errors.SchemaErrors as exc:
        print(f"error: {args.path}: candle contract failed:\n{exc.failure_cases}", file=sys.stderr)
        return 2
    print(f"imported {imported.rows} candle rows from {args.path}")
    if os.environ.get("DAGSTER_HOME") and imported.rows_by_day:
        from assets.candle_catalogue import report_filled_days

        try:
            reported = report_filled_days(imported.rows_by_day, source=str(args.path))
        except Exception as exc:  # the candles are stored; only the catalogue is behind
            print(
                f"warning: DAGSTER_HOME={os.environ['DAGSTER_HOME']}: could not mark the "
                f"imported days in the Dagster catalogue: {exc}",
                file=sys.stderr,
            )
        else:
            print(f"marked {reported} daily candles partitions filled in the Dagster catalogue")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "import-candles", help="load CSV candles ({SYMBOL}_{timeframe}.csv) into the database"
    )
    parser.add_argument("path", help="a CSV file or a folder of them")
    parser.add_argument("--url", help="database URL (default: ALPHAPULSE_DATABASE_URL)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run)
