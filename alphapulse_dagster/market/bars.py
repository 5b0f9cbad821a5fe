"""Bars of many symbols as 2-D arrays, and the "last closed bar at time t" lookup.

``Bars`` holds OHLCV arrays shaped ``(n_symbols, n_bars)``, oldest bar first. A
``BarPanel`` adds the symbols, the timeframe and each bar's open/close time. Each symbol's
own bar sequence is kept (no alignment onto a common clock, so weekend gaps stay gaps and
indicators run over the bars that exist); shorter histories are right-padded with NaN
prices and a far-future close time, which no causal computation or as-of lookup can reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from alphapulse_dagster.market.resample import OHLCV_COLUMNS, timeframe_to_timedelta, to_utc

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Close/open time of padding slots (ns): later than any real bar.
PAD_TIME_NS = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Bars:
    """OHLCV prices (price units) and volume, each shaped ``(n_symbols, n_bars)``."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    @classmethod
    def from_arrays(
        cls,
        open: ArrayLike,
        high: ArrayLike,
        low: ArrayLike,
        close: ArrayLike,
        volume: ArrayLike,
    ) -> Bars:
        """Build from 1-D (one symbol) or 2-D arrays; always stores 2-D float64."""
        arrays = [
            np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (open, high, low, close, volume)
        ]
        shape = arrays[0].shape
        if any(a.shape != shape for a in arrays) or len(shape) != 2:
            raise ValueError(
                f"OHLCV arrays must share one 2-D shape, got {[a.shape for a in arrays]}"
            )
        return cls(*arrays)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Bars:
        """One symbol's bars from a frame with OHLCV columns (oldest first)."""
        return cls.from_arrays(*(df[c].to_numpy(dtype=np.float64) for c in OHLCV_COLUMNS))

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape  # type: ignore[return-value]

    def take_rows(self, rows: ArrayLike) -> Bars:
        """The bars of the selected symbol rows."""
        idx = np.asarray(rows, dtype=np.int64)
        return Bars(*(getattr(self, c)[idx] for c in OHLCV_COLUMNS))


@dataclass(frozen=True)
class BarPanel:
    """Bars of several symbols on one timeframe with their times (int64 ns, UTC).

    ``open_time``/``close_time`` are ``(n_symbols, n_bars)``; padding slots hold
    :data:`PAD_TIME_NS`. ``n_bars[r]`` is the number of real bars of symbol ``r``.
    """

    symbols: tuple[str, ...]
    timeframe: str
    bars: Bars
    open_time: IntArray
    close_time: IntArray
    n_bars: IntArray

    def row_of(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}


def panel_from_frame(
    df: pd.DataFrame, timeframe: str, symbols: Sequence[str] | None = None
) -> BarPanel:
    """Pivot a long frame (symbol, open_time, OHLCV) into a right-padded :class:`BarPanel`.

    ``symbols`` fixes the row order (symbols absent from ``df`` get empty rows); by default
    the sorted symbols of ``df``. Duplicate ``(symbol, open_time)`` rows are an error.
    """
    tf_ns = timeframe_to_timedelta(timeframe).value
    if symbols is None:
        symbols = sorted(df["symbol"].unique().tolist()) if len(df) else []
    symbols = tuple(symbols)
    codes = pd.Categorical(df["symbol"], categories=list(symbols)).codes.astype(np.int64)
    keep = codes >= 0
    open_ns = to_utc(df["open_time"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)[keep]
    codes = codes[keep]
    order = np.lexsort((open_ns, codes))
    codes, open_ns = codes[order], open_ns[order]
    if len(codes) > 1:
        dup = (codes[1:] == codes[:-1]) & (open_ns[1:] == open_ns[:-1])
        if dup.any():
            i = int(np.argmax(dup))
            raise ValueError(f"duplicate bar for {symbols[codes[i]]} at {pd.Timestamp(open_ns[i])}")
    n_rows = len(symbols)
    counts = np.bincount(codes, minlength=n_rows).astype(np.int64)
    width = int(counts.max()) if n_rows and len(codes) else 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n_rows else np.zeros(0, np.int64)
    pos = np.arange(len(codes)) - starts[codes]
    arrays = {}
    for c in OHLCV_COLUMNS:
        a = np.full((n_rows, width), np.nan)
        a[codes, pos] = df[c].to_numpy(dtype=np.float64)[keep][order]
        arrays[c] = a
    open_time = np.full((n_rows, width), PAD_TIME_NS, dtype=np.int64)
    open_time[codes, pos] = open_ns
    close_time = np.full((n_rows, width), PAD_TIME_NS, dtype=np.int64)
    close_time[codes, pos] = open_ns + tf_ns
    return BarPanel(symbols, timeframe, Bars(**arrays), open_time, close_time, counts)


def last_closed_bar(panel: BarPanel, rows: ArrayLike, times_ns: ArrayLike) -> IntArray:
    """For each query ``(row, t)``, the index of the last bar with close time <= t, else -1.

    Vectorised over queries: each row's close times are increasing, so a flattened key
    ``row * span + time`` is globally sorted and one ``searchsorted`` answers all queries.
    """
    rows = np.asarray(rows, dtype=np.int64)
    t = np.asarray(times_ns, dtype=np.int64) // 1_000_000_000
    n_rows, width = panel.close_time.shape
    if width == 0 or len(rows) == 0:
        return np.full(len(rows), -1, dtype=np.int64)
    real = panel.close_time != PAD_TIME_NS
    close_s = np.where(real, panel.close_time // 1_000_000_000, 0)
    lo = min(int(close_s[real].min()) if real.any() else 0, int(t.min())) - 1
    hi = max(int(close_s[real].max()) if real.any() else 0, int(t.max())) + 1
    span = hi - lo + 2
    keys = np.where(real, close_s - lo, span - 1) + np.arange(n_rows)[:, None] * span
    query = rows * span + (t - lo)
    pos = np.searchsorted(keys.ravel(), query, side="right") - 1
    col = pos - rows * width
    return np.where(col >= 0, col, -1).astype(np.int64)
