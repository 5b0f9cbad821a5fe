"""Live/backfill parity: do the stored signals of a window come out again, bit for bit,
when the window is regenerated from the stored candles?

The live schedule stores a day's signals hour by hour; a backfill stores them in one go.
Both must store the same rows (the warm-up is anchored, see ``mtf_run``). This recomputes
a window and compares every stored signal's pinned columns with the regenerated one.
Lifecycle columns (``status``, fills, exits) and ``created_at`` are not compared: they
record what happened later and when the row was written, not what the signal was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from alphapulse_dagster.config import AppConfig
from alphapulse_dagster.db.tables import ai_signals_mtf
from alphapulse_dagster.signals.mtf_run import generate_window

#: The pinned columns of ``ai_signals_mtf`` that describe the signal itself.
SIGNAL_COLUMNS: tuple[str, ...] = (
    "symbol",
    "direction",
    "signal_timeframe",
    "entry_timeframe",
    "timestamp",
    "signal_confidence",
    "model_heads_analysis",
    "market_price",
    "entry_price",
    "stop_loss",
    "take_profits",
    "risk_reward_ratio",
    "entry_strategy",
    "entry_pattern",
    "entry_confidence",
    "atr",
    "htf_alignment",
    "expires_at",
)


@dataclass
class ParityReport:
    """Stored signals of a window against the same window regenerated."""

    stored: int = 0
    reproduced: int = 0
    # signal_id -> why it was not reproduced: "not regenerated" or the differing columns
    misses: dict[str, str] = field(default_factory=dict)

    @property
    def share(self) -> float:
        """Share of stored signals reproduced exactly (1.0 for an empty window)."""
        return self.reproduced / self.stored if self.stored else 1.0


def _same(stored: Any, regenerated: Any) -> bool:
    if isinstance(regenerated, pd.Timestamp):
        regenerated = regenerated.to_pydatetime()
    if isinstance(regenerated, tuple):
        regenerated = list(regenerated)
    return bool(stored == regenerated)


def signal_parity(
    engine: Engine, config: AppConfig, start: datetime, end: datetime
) -> ParityReport:
    """Compare the signals stored with signal time in ``[start, end)`` with
    :func:`generate_window` over the same window (exact equality, floats included)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(ai_signals_mtf.c.signal_id, *(ai_signals_mtf.c[c] for c in SIGNAL_COLUMNS))
            .where(ai_signals_mtf.c.timestamp >= start, ai_signals_mtf.c.timestamp < end)
            .order_by(ai_signals_mtf.c.timestamp, ai_signals_mtf.c.symbol)
        ).all()
    report = ParityReport(stored=len(rows))
    if not rows:
        return report
    regenerated = {
        r["signal_id"]: r for r in generate_window(engine, config, start, end).to_dict("records")
    }
    for row in rows:
        fresh = regenerated.get(row.signal_id)
        if fresh is None:
            report.misses[row.signal_id] = "not regenerated"
            continue
        differing = [c for c in SIGNAL_COLUMNS if not _same(getattr(row, c), fresh[c])]
        if differing:
            report.misses[row.signal_id] = "differs in " + ", ".join(differing)
        else:
            report.reproduced += 1
    return report
