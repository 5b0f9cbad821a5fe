"""Benchmark: MTF signal generation + entry refinement, 1,000 symbols x 500 entry bars.

The symbols are SYNTHETIC: each is a 500-bar window of the real BTCUSD 1h sample
(``data/sample/BTCUSD_1h.csv``) starting at a different offset, scaled by a
per-symbol factor and re-stamped onto one common hourly clock. Entry timeframe 1h
(500 bars), signal timeframe 4h (125 bars), higher timeframe 1d, all resampled in memory.

Timed (median of ``--runs``), candles already in memory:
  * resample: 1h -> 4h and 1d for all symbols;
  * live: ``generate_signals`` for the last closed 4h bar (the scheduled run);
  * forced: ``generate_signals`` with a permissive rule (any head, every bar) so that
    nearly every symbol gets a signal, i.e. ~1,000 refinements;
  * refine-all: heads on 4h + ``refine_entries`` for all 1,000 symbols directly.
Peak RSS is ``ru_maxrss`` of this process (it includes the interpreter, numpy and pandas).

Run:  PYTHONPATH=. /work/main/.venv/bin/python bench/bench_signals.py
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse_dagster.market.bars import last_closed_bar, panel_from_frame
from alphapulse_dagster.market.resample import resample_ohlcv
from alphapulse_dagster.signals.entry_refinement import refine_entries
from alphapulse_dagster.signals.model_heads import ConsensusRule, evaluate_heads
from alphapulse_dagster.signals.signal_generation import generate_signals

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "BTCUSD_1h.csv"


def synthetic_universe(n_symbols: int, n_bars: int) -> pd.DataFrame:
    """Long 1h frame of ``n_symbols`` synthetic symbols derived from the BTCUSD sample."""
    src = pd.read_csv(SAMPLE)
    ohlcv = src[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    span = len(src) - n_bars
    clock_ns = pd.Timestamp("2024-01-01", tz="UTC").value + np.arange(n_bars) * 3_600 * 10**9
    starts = (np.arange(n_symbols) * 7919) % span  # spread windows over the sample
    scale = 0.5 + (np.arange(n_symbols) % 97) / 48.0
    blocks = ohlcv[starts[:, None] + np.arange(n_bars)[None, :]]  # (sym, bar, 5)
    blocks[:, :, :4] *= scale[:, None, None]
    return pd.DataFrame({
        "symbol": pd.Categorical.from_codes(
            np.repeat(np.arange(n_symbols), n_bars), [f"SYN{i:04d}" for i in range(n_symbols)]
        ),
        "open_time": pd.to_datetime(np.tile(clock_ns, n_symbols), utc=True),
        "open": blocks[:, :, 0].ravel(), "high": blocks[:, :, 1].ravel(),
        "low": blocks[:, :, 2].ravel(), "close": blocks[:, :, 3].ravel(),
        "volume": blocks[:, :, 4].ravel(),
    })  # fmt: skip


def rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        out = None  # let the previous result go before the next run
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    print(f"  peak RSS so far {rss_mb():.0f} MB")
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--bars", type=int, default=500)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    hourly = synthetic_universe(args.symbols, args.bars)
    rss_loaded = rss_mb()

    def resample() -> dict[str, pd.DataFrame]:
        coarse = {tf: resample_ohlcv(hourly, tf) for tf in ("4h", "1d")}
        return {"1h": hourly, **coarse}

    t_resample, candles = timed(resample, args.runs)
    assert isinstance(candles, dict)
    last_close = hourly["open_time"].max() + pd.Timedelta("1h")
    kw = dict(signal_timeframe="4h", entry_timeframe="1h", htf_timeframes=("1d",))

    t_live, live = timed(lambda: generate_signals(
        candles, start=last_close, end=last_close + pd.Timedelta("1s"), **kw
    ), args.runs)  # fmt: skip
    permissive = ConsensusRule(min_agreeing_heads=1, min_mean_confidence=0.0, fire_on="every_bar")
    t_forced, forced = timed(lambda: generate_signals(
        candles, start=last_close, end=last_close + pd.Timedelta("1s"),
        consensus_rule=permissive, **kw,
    ), args.runs)  # fmt: skip

    def refine_all() -> list:
        sig = panel_from_frame(candles["4h"], "4h")
        evaluate_heads(sig.bars, ConsensusRule())
        entry = panel_from_frame(candles["1h"], "1h", sig.symbols)
        rows = np.arange(len(sig.symbols))
        when = np.full(len(rows), last_close.value, dtype=np.int64)
        j = last_closed_bar(entry, rows, when)
        dirs = np.where(rows % 2 == 0, 1, -1)
        market = entry.bars.close[rows, j]
        return refine_entries(entry.bars, rows, j, dirs, market, list(sig.symbols))

    t_all, refined = timed(refine_all, args.runs)
    assert isinstance(refined, list) and isinstance(live, pd.DataFrame)
    assert isinstance(forced, pd.DataFrame)
    peak = rss_mb()

    strategies = pd.Series([r.entry_strategy for r in refined]).value_counts().to_dict()
    print(f"symbols={args.symbols} entry_bars={args.bars} runs={args.runs} (median seconds)")
    print(f"resample 1h->4h,1d            {t_resample:.3f} s")
    print(f"generate_signals live window  {t_live:.3f} s  signals={len(live)}")
    print(f"generate_signals forced       {t_forced:.3f} s  signals={len(forced)}")
    print(f"heads + refine_entries all    {t_all:.3f} s  refined={len(refined)}")
    print(f"peak RSS {peak:.0f} MB (after building the synthetic candles: {rss_loaded:.0f} MB)")
    print(f"entry strategies (refine-all): {strategies}")


if __name__ == "__main__":
    main()
