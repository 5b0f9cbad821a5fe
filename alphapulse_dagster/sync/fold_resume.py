"""When a signal's fold can resume from its stored row instead of replaying its whole
history: the new events must all sort after the folded ones (``lifecycle.fold``'s
``resume``). :func:`span_of` measures a stored row's recent events, :func:`can_resume`
decides; ``projection.read_fold_input`` uses both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from alphapulse_dagster.sync.lifecycle import EventRow, is_inferred_expiry


class EventSpan(NamedTuple):
    """What :func:`can_resume` needs of a signal's events, relative to its stored row
    (``last`` = the row's ``last_event_id``): the latest event time among the folded events
    (the row's ``folded_until``), the earliest among those after ``last`` whose place in
    time matters (:func:`span_of`; None when there is none), whether any event up to
    ``last`` is past the projection cursor, and whether there is any event after ``last``."""

    folded_until: datetime | None
    fresh_from: datetime | None
    unseen_before_last: bool
    fresh: bool = True


def can_resume(stored: Mapping[str, Any] | None, span: EventSpan | None) -> bool:
    """Whether the events past ``stored["last_event_id"]`` can be folded onto ``stored``:
    each must sort after all the folded ones (``(event_time, event_id)`` order: a
    late-timed event re-folds the history) — but a first SIGNAL_CREATED, whose place does
    not matter (:func:`span_of`); no event up to the row's last one may be past the cursor
    (the row may not hold it: re-fold); the fold must have opened the signal itself
    (status provenance); and the signal's source must be settled (a row holding only
    inferred expiries takes it from its first authored event)."""
    if stored is None or span is None or "status" not in (stored["field_provenance"] or {}):
        return False
    if stored["created_at"] is None and is_inferred_expiry(stored):
        return False
    if span.unseen_before_last or span.folded_until is None or not span.fresh:
        return False
    return span.fresh_from is None or span.fresh_from >= span.folded_until


def span_of(stored: Mapping[str, Any], recent: Sequence[EventRow], after: int) -> EventSpan:
    """The :class:`EventSpan` of a stored row from its ``recent`` events — those with an id
    above ``min(stored["last_event_id"], after)`` (:func:`_recent_events`): the ones above
    ``last_event_id`` are new, the others lie in ``(after, last_event_id]``, unseen.

    A SIGNAL_CREATED reaching a row that holds none (no ``created_at``) only fills what is
    still empty — ``created_at``, and ``direction`` / ``timeframe`` where no event set
    them — and a None status, which every later event treats as PENDING. So it may sort
    anywhere among the folded events: folded last, it gives what the time-ordered fold
    gives (``test_resuming_the_fold_from_the_stored_row_equals_a_full_fold`` checks this
    over random histories). This is the seed's late SIGNAL_CREATED, timed before the
    ENTRY and MFE updates it arrives after."""
    last = stored["last_event_id"]
    first_created = stored.get("created_at") is None
    new = [e for e in recent if e.event_id > last]
    placed = [e.event_time for e in new if not (first_created and e.event_type == "SIGNAL_CREATED")]
    unseen = any(after < e.event_id <= last for e in recent)
    return EventSpan(stored["folded_until"], min(placed, default=None), unseen, bool(new))
