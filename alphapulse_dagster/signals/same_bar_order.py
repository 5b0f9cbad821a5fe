"""Which came first on a bar that touched both the stop and a target: ask the finer bars.

``trade_management`` calls this for trades whose exit bar is ambiguous. The same exit rule
(``exit_scan``) runs on the finer bars inside that bar, with the trade's state at the
bar's open; only a clear answer (the finer bars cover the whole bar, and no finer bar is
itself ambiguous) replaces the conservative one (the stop, flagged ``ambiguous``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from alphapulse_dagster.market.bar_series import BarSeries
from alphapulse_dagster.signals.exit_scan import (
    BREAKEVEN,
    STOP,
    BoolArray,
    FloatArray,
    IntArray,
    Levels,
    first_true,
    scan_exits,
    window_of,
)


@dataclass(frozen=True)
class ExitBars:
    """One row per ambiguous trade: ``open_ns`` of its exit bar; ``on_fill_bar``: a limit
    filled at its level on that very bar; ``limit``: that limit (favourable units);
    ``t1_done``: the first target traded on an earlier bar (the stop is at the entry)."""

    open_ns: IntArray
    on_fill_bar: BoolArray
    limit: FloatArray
    t1_done: BoolArray


def order_on_finer(
    exit_bars: ExitBars, bar_ns: int, finer: BarSeries, levels: Levels
) -> dict[int, tuple[int, float, int]]:
    """``{row: (reason code, exit price in favourable units, exit time ns)}`` for the rows
    the finer bars decide; the others keep their conservative answer."""
    per_bar = max(1, bar_ns // finer.bar_ns)
    lo = np.searchsorted(finer.open_ns, exit_bars.open_ns, side="left")
    idx = lo[:, None] + np.arange(per_bar)[None, :]
    safe = np.clip(idx, 0, len(finer) - 1)
    valid = (idx < len(finer)) & (finer.open_ns[safe] < (exit_bars.open_ns + bar_ns)[:, None])
    covered = valid.sum(axis=1) == per_bar
    w = window_of(finer, idx, valid, levels.sign)
    # the fill bar: the fill is the first finer bar through the entry; before it, nothing
    cols = np.arange(per_bar)[None, :]
    on_fill = exit_bars.on_fill_bar
    fill_col = np.where(on_fill, first_true(w.low <= exit_bars.limit[:, None], per_bar), 0)
    before = cols < fill_col[:, None]
    at_fill = on_fill[:, None] & (cols == fill_col[:, None])
    rows = np.arange(len(fill_col))
    at_close = np.maximum(levels.entry, w.close_at(rows, np.minimum(fill_col, per_bar - 1)))
    high = np.where(before, -np.inf, np.where(at_fill, at_close[:, None], w.high))
    low = np.where(before, np.inf, w.low)
    t1_done = exit_bars.t1_done
    state = replace(levels, stop=np.where(t1_done, levels.entry, levels.stop))
    scan = scan_exits(replace(w, high=high, low=low), state, t1_done, ~(before | at_fill))
    ok = covered & (scan.exit_k < per_bar) & ~scan.ambiguous
    reason = scan.reason.copy()
    # a stop-side exit after the first target, at the entry, is a break-even exit
    reason[(reason == STOP) & t1_done] = BREAKEVEN
    out: dict[int, tuple[int, float, int]] = {}
    for j in np.flatnonzero(ok).tolist():
        at = int(finer.close_ns[lo[j] + scan.exit_k[j]])
        out[j] = (int(reason[j]), float(scan.price[j]), at)
    return out
