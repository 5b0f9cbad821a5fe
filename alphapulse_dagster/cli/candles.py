"""``alphapulse import-candles PATH`` — load CSV candles (a file or a folder of
``{SYMBOL}_{timeframe}.csv``) into the database, with the coarser timeframes the config
needs derived by resampling. Validated against the candle contract first."""

from __future__ import annotations

import argparse
import re
import sys
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


def import_candles(path: Path, url: str | None = None, progress: bool = True) -> int:
    """Import every CSV under ``path``; returns the number of rows written."""
    from schemas.candles import CandleFrame  # the contract lives in schemas/

    config = load_config()
    wanted = {s.symbol: s for s in config.symbols.symbols}
    engine = make_engine(url)
    total = 0
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
                        total += upsert_candles(connection, frame.iloc[start : start + _CHUNK], tf)
    finally:
        engine.dispose()
    return total


def _run(args: argparse.Namespace) -> int:
    import pandera.pandas as pa

    try:
        written = import_candles(Path(args.path), args.url, progress=not args.quiet)
    except (MarketDataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except pa.errors.SchemaErrors as exc:
        print(f"error: {args.path}: candle contract failed:\n{exc.failure_cases}", file=sys.stderr)
        return 2
    print(f"imported {written} candle rows from {args.path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "import-candles", help="load CSV candles ({SYMBOL}_{timeframe}.csv) into the database"
    )
    parser.add_argument("path", help="a CSV file or a folder of them")
    parser.add_argument("--url", help="database URL (default: ALPHAPULSE_DATABASE_URL)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run)
