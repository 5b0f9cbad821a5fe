"""The signal lifecycle: the ``signals`` registry as a pure fold of ``signal_events``.

States (SPEC §8)::

    PENDING --ENTRY--> CONFIRMED --EXIT--> CLOSED (TARGET | STOP | BREAKEVEN | MANUAL)
    PENDING --CANCELLED--> CANCELLED (explicit, or inferred EXPIRED)

Rules of the fold, applied to one signal's events in ``(event_time, event_id)`` order —
whatever order they arrived in:

- SIGNAL_CREATED opens a signal as PENDING (an ENTRY that arrived first already made it
  CONFIRMED; the SIGNAL_CREATED then only adds ``created_at``).
- ENTRY confirms a PENDING signal, and re-opens one cancelled by an *inferred* expiry
  (the expiry event carries the expiry moment as its ``event_time``, so only an ENTRY
  timed after it can be "late"). An ENTRY after an *explicit* CANCELLED is ignored.
- An explicit CANCELLED outranks an inferred one in either order: it replaces an inferred
  expiry (confidence 1.0), and an inferred expiry never touches a non-PENDING signal.
- EXIT closes the trade; MFE_UPDATE only stamps ``last_mfe_update_at``.

Inferred expiries are events too (``cancellations.py`` appends them), so rebuilding the
registry from the log gives the same projection-owned columns as the incremental path
(both in ``projection.py``, which reads the events and writes the rows; this module only
folds). Sync-owned columns (``reconcile.py``) and their provenance survive both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from alphapulse_dagster.direction import normalise_direction
from alphapulse_dagster.sync.events import EventType
from alphapulse_dagster.sync.payload_values import price, price_list, timeframe_of

PENDING, CONFIRMED, CLOSED, CANCELLED = "PENDING", "CONFIRMED", "CLOSED", "CANCELLED"
EXPIRED = "EXPIRED"
# how sure we are that a PENDING signal past its window really expired (no explicit event)
INFERRED_STATUS_CONFIDENCE = 0.8

# Columns the fold owns (rewritten on every re-fold).
PROJECTED_COLUMNS: tuple[str, ...] = (
    "source",
    "trade_id",
    "symbol",
    "timeframe",
    "direction",
    "status",
    "status_reason",
    "status_confidence",
    "created_at",
    "confirmed_at",
    "entry_price",
    "stop_loss",
    "targets",
    "last_mfe_update_at",
    "exit_price",
    "exit_reason",
    "closed_at",
    "cancelled_at",
    "first_event_id",
    "last_event_id",
    "folded_until",
)
# Projection-owned, but the sync may fill them while no event carries them; an event value
# always wins, an empty fold result keeps the sync's value.
SHARED_COLUMNS: tuple[str, ...] = ("direction", "entry_price", "stop_loss", "targets")
# Fields whose provenance the fold writes (tier "event").
PROVENANCED_COLUMNS: tuple[str, ...] = (
    "timeframe",
    "direction",
    "status",
    "created_at",
    "confirmed_at",
    "entry_price",
    "stop_loss",
    "targets",
    "last_mfe_update_at",
    "exit_price",
    "exit_reason",
    "closed_at",
    "cancelled_at",
)
_PROVENANCED = frozenset(PROVENANCED_COLUMNS)


class EventRow(NamedTuple):
    """One ``signal_events`` row (a tuple: a cycle loads thousands)."""

    event_id: int
    source: str
    event_type: str
    signal_id: str
    trade_id: str | None
    symbol: str
    event_time: datetime
    payload: Mapping[str, Any]

    @property
    def inferred(self) -> bool:
        return self.event_type == EventType.CANCELLED and self.payload.get("inferred") is True


class KnownEvents(NamedTuple):
    """A signal's events that a fold loaded: all of them (``complete``), or only those past
    its stored row's last folded event — whose ids are above every folded one, so the
    latest event of a type is known whenever one of them has that type."""

    events: Sequence[EventRow]
    complete: bool

    def latest(self, event_type: str) -> EventRow | None | bool:
        """The latest ``event_type`` event (by id); None if the signal has none; False if
        these events cannot tell (the database must)."""
        best = None
        for event in self.events:
            if event.event_type == event_type and (best is None or event.event_id > best.event_id):
                best = event
        if best is None and not self.complete:
            return False
        return best


# --- the fold -----------------------------------------------------------------------------


class _FoldState:
    """One signal's fold so far: its projected columns, their provenance, and whether an
    explicit CANCELLED was applied (only that makes CANCELLED final)."""

    __slots__ = ("explicit_cancel", "provenance", "row")

    def __init__(
        self, row: dict[str, Any], provenance: dict[str, dict[str, Any]], explicit_cancel: bool
    ) -> None:
        self.row = row
        self.provenance = provenance
        self.explicit_cancel = explicit_cancel

    def put(self, column: str, value: Any, event: EventRow, confidence: float = 1.0) -> None:
        """Set ``column`` from ``event``, with its provenance (tier "event")."""
        self.row[column] = value
        if column in _PROVENANCED:
            self.provenance[column] = {
                "tier": "event",
                "confidence": confidence,
                "source": f"{event.event_type}#{event.event_id}",
            }

    def clear(self, *columns: str) -> None:
        for column in columns:
            self.row[column] = None
            self.provenance.pop(column, None)


def _on_signal_created(state: _FoldState, event: EventRow) -> None:
    """Opens the signal as PENDING; only fills what no earlier-timed event set."""
    row, payload = state.row, event.payload
    if row["created_at"] is None:
        state.put("created_at", event.event_time, event)
    if row["status"] is None:
        state.put("status", PENDING, event)
    direction = normalise_direction(payload.get("direction"))
    if direction and row["direction"] is None:
        state.put("direction", direction, event)
    timeframe = timeframe_of(payload.get("timeframe"))
    if timeframe and row["timeframe"] is None:
        state.put("timeframe", timeframe, event)


def _on_entry(state: _FoldState, event: EventRow) -> None:
    """Confirms a PENDING signal, or re-opens one cancelled by an inferred expiry."""
    row, payload = state.row, event.payload
    status = row["status"]
    reopenable = status == CANCELLED and not state.explicit_cancel
    if not (status in (None, PENDING) or reopenable):
        return
    state.put("status", CONFIRMED, event)
    row["status_reason"] = None
    row["status_confidence"] = 1.0
    state.clear("cancelled_at")
    state.put("confirmed_at", event.event_time, event)
    for column in ("entry_price", "stop_loss"):
        value = price(payload.get(column))
        if value is not None:
            state.put(column, value, event)
    targets = price_list(payload.get("targets"))
    if targets is not None:
        state.put("targets", targets, event)
    direction = normalise_direction(payload.get("direction"))
    if direction:
        state.put("direction", direction, event)
    timeframe = timeframe_of(payload.get("timeframe"))
    if timeframe:
        state.put("timeframe", timeframe, event)


def _on_mfe_update(state: _FoldState, event: EventRow) -> None:
    """Stamps ``last_mfe_update_at``; the trade is evidently live if the ENTRY was missed."""
    if state.row["status"] in (None, PENDING):
        state.put("status", CONFIRMED, event)
        state.row["status_confidence"] = 1.0
    state.put("last_mfe_update_at", event.event_time, event)


def _on_exit(state: _FoldState, event: EventRow) -> None:
    """Closes the trade (reason TARGET / STOP / BREAKEVEN / MANUAL, MANUAL if absent)."""
    row, payload = state.row, event.payload
    if row["status"] == CLOSED:
        return
    reason = str(payload.get("exit_reason") or "MANUAL").strip().upper()[:16]
    state.put("status", CLOSED, event)
    row["status_reason"] = reason
    row["status_confidence"] = 1.0
    state.put("exit_reason", reason, event)
    exit_price = price(payload.get("exit_price"))
    if exit_price is not None:
        state.put("exit_price", exit_price, event)
    state.put("closed_at", event.event_time, event)


def _on_cancelled(state: _FoldState, event: EventRow) -> None:
    """An inferred expiry cancels only a PENDING signal, at confidence 0.8; an explicit
    CANCELLED also replaces an inferred one, and is final."""
    row = state.row
    status = row["status"]
    if event.inferred:
        if status in (None, PENDING):
            state.put("status", CANCELLED, event, INFERRED_STATUS_CONFIDENCE)
            row["status_reason"] = EXPIRED
            row["status_confidence"] = INFERRED_STATUS_CONFIDENCE
            state.put("cancelled_at", event.event_time, event, INFERRED_STATUS_CONFIDENCE)
    elif status in (None, PENDING) or (status == CANCELLED and not state.explicit_cancel):
        state.explicit_cancel = True
        reason = str(event.payload.get("reason") or CANCELLED).strip().upper()[:32]
        state.put("status", CANCELLED, event)
        row["status_reason"] = reason
        row["status_confidence"] = 1.0
        state.put("cancelled_at", event.event_time, event)


# One handler per event type: adding a type to ``EventType`` means adding its handler here.
HANDLERS: dict[str, Callable[[_FoldState, EventRow], None]] = {
    EventType.SIGNAL_CREATED: _on_signal_created,
    EventType.ENTRY: _on_entry,
    EventType.MFE_UPDATE: _on_mfe_update,
    EventType.EXIT: _on_exit,
    EventType.CANCELLED: _on_cancelled,
}


def fold(events: Sequence[EventRow], resume: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Project one signal's events into its registry columns (``PROJECTED_COLUMNS``) plus
    ``field_provenance`` for them. ``events`` may be in any order; each is applied by its
    type's handler (:data:`HANDLERS`) in ``(event_time, event_id)`` order.

    ``resume``: the stored registry row of the signal, when every one of ``events`` sorts
    after all the events already folded into it (in ``(event_time, event_id)`` order —
    see :func:`can_resume`). The fold then continues from that row instead of replaying
    the whole history; the result is the same."""
    ordered = sorted(events, key=lambda e: (e.event_time, e.event_id))
    if resume is not None:
        state = _FoldState(*_fold_state(resume))
    else:
        state = _FoldState(dict.fromkeys(PROJECTED_COLUMNS), {}, False)
    for event in ordered:
        handler = HANDLERS.get(event.event_type)
        if handler is not None:
            handler(state, event)
    row, provenance = state.row, state.provenance

    if row["status"] is None:  # only events that do not open a signal (never expected)
        row["status"] = PENDING
        row["status_confidence"] = 1.0
    if row["status_confidence"] is None:
        row["status_confidence"] = 1.0
    if resume is not None:
        # the first SIGNAL_CREATED names the source; created_at is set iff one was folded
        if resume["created_at"] is None:
            created = (e for e in ordered if e.event_type == EventType.SIGNAL_CREATED)
            row["source"] = next((e.source for e in created), row["source"])
        row["trade_id"] = row["trade_id"] or next((e.trade_id for e in ordered if e.trade_id), None)
        row["last_event_id"] = max(row["last_event_id"], *(e.event_id for e in ordered))
        if ordered:  # (can_resume: they all sort after the row's folded_until)
            held = row["folded_until"]
            row["folded_until"] = max(ordered[-1].event_time, held or ordered[-1].event_time)
    else:
        first = min(ordered, key=lambda e: e.event_id)
        authored = [e for e in ordered if not e.inferred] or ordered
        creator = next(
            (e for e in authored if e.event_type == EventType.SIGNAL_CREATED), authored[0]
        )
        row["source"] = creator.source
        row["trade_id"] = next((e.trade_id for e in ordered if e.trade_id), None)
        row["symbol"] = first.symbol
        row["first_event_id"] = first.event_id
        row["last_event_id"] = max(e.event_id for e in ordered)
        row["folded_until"] = ordered[-1].event_time
    row["field_provenance"] = provenance
    row["data_confidence"] = mean_confidence(provenance)
    return row


def _fold_state(
    stored: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], bool]:
    """The fold's running state as it was after the events folded into ``stored``: its
    projected columns and event provenance — a shared column the sync filled (not tier
    "event") was empty for the fold — and whether an explicit CANCELLED was applied (the
    only way to hold CANCELLED at confidence 1.0)."""
    held: Mapping[str, Any] = stored["field_provenance"] or {}
    # the entries are shared, not copied: the fold replaces an entry, never edits one
    provenance = {c: v for c, v in held.items() if c in _PROVENANCED and v.get("tier") == "event"}
    row = {c: stored[c] for c in PROJECTED_COLUMNS}
    for column in SHARED_COLUMNS:
        if column not in provenance:
            row[column] = None
    explicit = stored["status"] == CANCELLED and float(stored["status_confidence"]) >= 1.0
    return row, provenance, explicit


def is_inferred_expiry(row: Mapping[str, Any]) -> bool:
    """CANCELLED by an inferred expiry (below confidence 1.0), which a late ENTRY may
    re-open — an explicit CANCELLED is final."""
    return (
        row.get("status") == CANCELLED
        and row.get("status_reason") == EXPIRED
        and float(row.get("status_confidence") or 1.0) < 1.0
    )


def mean_confidence(provenance: Mapping[str, Any]) -> float | None:
    """The mean confidence over a row's field provenance (``signals.data_confidence``)."""
    values = [float(v["confidence"]) for v in provenance.values() if "confidence" in v]
    return sum(values) / len(values) if values else None


def merge_with_existing(
    projected: Mapping[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The projected row with the sync-owned columns and provenance of ``existing`` kept.

    A shared column (``SHARED_COLUMNS``) that no event carries keeps the sync's value."""
    merged = dict(projected)
    if existing is None:
        return merged
    old_provenance: Mapping[str, Any] = existing.get("field_provenance") or {}
    provenance = {k: v for k, v in old_provenance.items() if k not in _PROVENANCED}
    for column in SHARED_COLUMNS:
        if merged[column] is None and existing.get(column) is not None:
            kept = old_provenance.get(column)
            if kept is not None and kept.get("tier") != "event":
                merged[column] = existing[column]
                provenance[column] = kept
    provenance.update(projected["field_provenance"])
    merged["field_provenance"] = provenance
    merged["data_confidence"] = mean_confidence(provenance)
    return merged
