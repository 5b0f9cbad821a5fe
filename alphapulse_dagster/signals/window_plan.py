"""Which of a window's signals are stored, decided in memory in signal-time order.

A signal is stored unless its symbol+direction is taken at its time: by a signal that is
active in the database then (PENDING or CONFIRMED: the partial unique index), or by one
placed before it and resolved after it (a re-run sees the history the live run saw). With
the lifecycle advanced to each signal time, a stored signal is active until its outcome
is known (:class:`~alphapulse_dagster.signals.mtf_lifecycle.Outlook`); without it, it stays
active. So a window is decided the way one store per signal time decides it, without a
database round trip per signal time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from alphapulse_dagster.signals.mtf_lifecycle import NO_END, LifecycleStats
from alphapulse_dagster.signals.trade_management import NO_TIME

ALREADY, TAKEN, FRESH, STORED, SKIPPED = "already", "taken", "fresh", "stored", "skipped"


@dataclass
class StoreStats:
    stored: int = 0
    duplicates_skipped: int = 0  # another active signal for the symbol+direction
    already_stored: int = 0  # this signal bar was stored by an earlier run
    stored_ids: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    """A refined signal of the window, its ``ai_signals_mtf`` row, its signal time (ns)
    and what becomes of it: ``already`` stored (same id), its bar ``taken`` by another
    id, ``stored`` or ``skipped`` (``fresh`` until decided)."""

    signal: Mapping[str, Any]
    row: dict[str, Any]
    at: int
    outcome: str = FRESH

    @property
    def pair(self) -> tuple[str, str]:
        return self.row["symbol"], self.row["direction"]


# (placed_at, active_until, resolved_at) in ns: a signal already holding a symbol+direction
Holder = tuple[int, int, int]


def decide(candidates: list[Candidate], holders: dict[tuple[str, str], list[Holder]],
           active_until: Mapping[str, int]) -> None:  # fmt: skip
    """Mark each fresh candidate (in signal-time order) stored or skipped. ``holders``: per
    symbol+direction, the stored signals that can take it; ``active_until``: when each fresh
    candidate, once stored, stops being active (``NO_END``: not in this window)."""
    for candidate in candidates:
        if candidate.outcome != FRESH:
            continue
        t = candidate.at
        held = holders.setdefault(candidate.pair, [])
        held[:] = [h for h in held if h[1] > t or h[2] > t]  # gone for good once past
        if any(t < until or placed < t < resolved for placed, until, resolved in held):
            candidate.outcome = SKIPPED
        else:
            candidate.outcome = STORED
            held.append((t, active_until.get(candidate.row["signal_id"], NO_END), NO_TIME))


def day_of(at: datetime) -> str:
    return pd.Timestamp(at).tz_convert("UTC").strftime("%Y-%m-%d")


@dataclass
class WindowRecord:
    """What storing a window did: totals, and each UTC day's own share (``YYYY-MM-DD`` of
    the signal time, i.e. the signal bar's close; lifecycle changes on the day they were
    evaluated)."""

    store: StoreStats
    lifecycle: LifecycleStats
    by_day: dict[str, WindowRecord] = field(default_factory=dict)

    def day(self, at: datetime) -> WindowRecord:
        key = day_of(at)
        if key not in self.by_day:
            self.by_day[key] = WindowRecord(StoreStats(), LifecycleStats())
        return self.by_day[key]

    def add_store(self, outcome: str, signal_id: str) -> None:
        self.store.stored += outcome == STORED
        self.store.duplicates_skipped += outcome in (SKIPPED, TAKEN)
        self.store.already_stored += outcome == ALREADY
        if outcome == STORED:
            self.store.stored_ids.append(signal_id)

    def add_lifecycle(self, step: LifecycleStats) -> None:
        for name in ("confirmed", "closed", "expired"):
            setattr(self.lifecycle, name, getattr(self.lifecycle, name) + getattr(step, name))
        self.lifecycle.still_pending = step.still_pending
