"""Tiered reconciliation: fill each signal's missing fields from the best source available.

Tiers, tried from the highest confidence down, field by field (SPEC §9):

====  ==========  ==========================================================================
tier  confidence  source and fields
====  ==========  ==========================================================================
0     1.0         the signal's latest SIGNAL_CREATED event: ``htf_alignment``, ``session``,
                  ``market_state``, ``signal_time``, ``direction`` and, when the payload
                  carries them (AlphaPulse MTF signals), ``entry_price`` / ``stop_loss`` /
                  ``targets``; ``confirmation_time`` = ``confirmed_at`` − created event
                  time, in seconds
1     1.0         candles covering the trade at its timeframe or finer: ``mfe`` / ``mae``
                  (R), ``mfe_price`` / ``mae_price`` (price), ``highest`` / ``lowest``
                  since entry, ``target_hit`` / ``stop_hit``
3     0.9         ``trade_id`` parsing (``YYYYMMDD_HHMMSS_<DIR>[_<symbol>]``, UTC):
                  ``signal_time``, ``direction``
2     0.8         database calculation: ``targets`` at 1R/2R/3R from entry and stop; MFE /
                  MAE from the latest MFE_UPDATE snapshot when no candles cover the trade
====  ==========  ==========================================================================

A field is written only when it is empty or the new confidence is strictly higher, so a
confidence never goes down. One exception keeps running measures honest: the trade
extremes (``REFRESHABLE``) are re-measured by the *same* tier while a trade runs (more
candles, a newer MFE_UPDATE) and change when the measurement changes. Every write records
``field_provenance[field] = {tier, confidence, source, at}`` and a ``sync_audit_log`` row.
Nothing changes ⇒ nothing is written (a second sync with no new data is a no-op).

The tiers' own rules: Tier 1 in ``excursions.py`` (MFE / MAE from candles), Tier 3 in
``trade_id.py``; Tier 0 and Tier 2 are here (:func:`candidates`).
"""

from __future__ import annotations

import math
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    cast,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from alphapulse_dagster.db.bulk import JsonMerge, in_ids, insert_rows
from alphapulse_dagster.db.engine import derived_write
from alphapulse_dagster.db.tables import candles, signal_events, signals, sync_audit_log
from alphapulse_dagster.direction import normalise_direction
from alphapulse_dagster.sync.excursions import Excursion, candle_excursion, load_candles
from alphapulse_dagster.sync.lifecycle import (
    EventRow,
    KnownEvents,
    mean_confidence,
    price,
    price_list,
)
from alphapulse_dagster.sync.projection import chunked, update_by_id
from alphapulse_dagster.sync.registry_rows import RegistryRows, load_rows
from alphapulse_dagster.sync.trade_id import parse_trade_id

TIER_CONFIDENCE: dict[str, float] = {"0": 1.0, "1": 1.0, "3": 0.9, "2": 0.8}
TIER_ORDER: tuple[str, ...] = ("0", "1", "3", "2")
R_MULTIPLES: tuple[float, ...] = (1.0, 2.0, 3.0)

# The columns the sync owns (plus direction / entry / stop / targets while no event has them).
SYNC_FIELDS: tuple[str, ...] = (
    "htf_alignment",
    "session",
    "market_state",
    "signal_time",
    "confirmation_time",
    "direction",
    "entry_price",
    "stop_loss",
    "targets",
    "mfe",
    "mae",
    "mfe_price",
    "mae_price",
    "highest",
    "lowest",
    "target_hit",
    "stop_hit",
)
_FIELD_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SYNC_FIELDS)}
REFRESHABLE: frozenset[str] = frozenset(
    ("mfe", "mae", "mfe_price", "mae_price", "highest", "lowest", "target_hit", "stop_hit")
)
_EXCURSION_FIELDS = ("mfe", "mae", "mfe_price", "mae_price", "highest", "lowest")


# --- candidates and the write rule --------------------------------------------------------


class Candidate(NamedTuple):
    """One tier's proposal for one field (a tuple: a cycle makes tens of thousands)."""

    tier: str
    value: Any
    source: str
    reason: str

    @property
    def confidence(self) -> float:
        return TIER_CONFIDENCE[self.tier]


class FieldChange(NamedTuple):
    signal_id: str
    field: str
    old: Any
    new: Any
    tier: str
    confidence: float
    old_confidence: float | None
    source: str
    reason: str


class LatestEvent(NamedTuple):
    event_id: int
    event_time: datetime
    payload: Mapping[str, Any]


def _nonempty_mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) and value else None


def _text(value: Any) -> str | None:
    return value.strip()[:32] if isinstance(value, str) and value.strip() else None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _open_to(row: Mapping[str, Any], provenance: Mapping[str, Any], name: str, tier: str) -> bool:
    """The write rule's gate: a ``tier`` proposal for ``name`` may be written when the
    field is empty, held less confidently, or a refreshable measure held by the same tier
    (written then only if the measure changed: :func:`plan_changes`). :func:`candidates`
    uses it to skip computing proposals that cannot win (most fields of a reconciled row
    are settled)."""
    if row[name] is None:
        return True
    held = provenance.get(name)
    if held is None or held.get("confidence") is None:
        return False  # a value with no provenance is never overwritten
    if TIER_CONFIDENCE[tier] > float(held["confidence"]):
        return True
    return name in REFRESHABLE and held.get("tier") == tier


def candidates(
    row: Mapping[str, Any],
    created: LatestEvent | None,
    mfe_snapshot: LatestEvent | None,
    measured: tuple[Excursion, str] | None,
) -> dict[str, Candidate]:
    """The best proposal of any tier for each field of one signal that a proposal could
    still change (:func:`_open_to`). Tiers are offered in ``TIER_ORDER``, so the first
    proposal for a field is its best one."""
    out: dict[str, Candidate] = {}
    provenance: Mapping[str, Any] = row["field_provenance"] or {}

    def offer(field_name: str, tier: str, value: Any, source: str, reason: str) -> None:
        if value is not None and field_name not in out:
            out[field_name] = Candidate(tier, value, source, reason)

    if created is not None:
        p, src = created.payload, f"SIGNAL_CREATED#{created.event_id}"
        offer("htf_alignment", "0", _nonempty_mapping(p.get("htf_alignment")), src, "Tier 0")
        offer("session", "0", _text(p.get("session")), src, "Tier 0")
        offer("market_state", "0", _text(p.get("market_state")), src, "Tier 0")
        signal_time = _parse_time(p.get("signal_time")) or created.event_time
        offer("signal_time", "0", signal_time, src, "Tier 0")
        offer("direction", "0", normalise_direction(p.get("direction")), src, "Tier 0")
        offer("entry_price", "0", price(p.get("entry_price")), src, "Tier 0")
        offer("stop_loss", "0", price(p.get("stop_loss")), src, "Tier 0")
        offer("targets", "0", price_list(p.get("targets")), src, "Tier 0")
        if row["confirmed_at"] is not None:
            seconds = (row["confirmed_at"] - created.event_time).total_seconds()
            if seconds >= 0:
                offer("confirmation_time", "0", seconds, src, "Tier 0: confirmed_at - created")

    if measured is not None:
        ex, timeframe = measured
        src = f"candles:{timeframe}"
        for name in _EXCURSION_FIELDS:
            offer(name, "1", getattr(ex, name), src, "Tier 1: candles since entry")
        offer("target_hit", "1", ex.target_hit, src, "Tier 1: candles since entry")
        offer("stop_hit", "1", ex.stop_hit, src, "Tier 1: candles since entry")

    direction = row["direction"]
    tier3 = _open_to(row, provenance, "signal_time", "3") or _open_to(
        row, provenance, "direction", "3"
    )
    if tier3:  # (an empty direction is open: the parsed one also serves Tier 2's targets)
        parsed = parse_trade_id(row["trade_id"])
        if parsed is not None:
            offer("signal_time", "3", parsed.signal_time, "trade_id", "Tier 3: trade_id parsed")
            offer("direction", "3", parsed.direction, "trade_id", "Tier 3: trade_id parsed")
            direction = direction or parsed.direction

    entry, stop = row["entry_price"], row["stop_loss"]
    if (
        entry is not None
        and stop is not None
        and direction in ("LONG", "SHORT")
        and _open_to(row, provenance, "targets", "2")
    ):
        risk = abs(entry - stop)
        sign = 1.0 if direction == "LONG" else -1.0
        if risk > 0 and (entry - stop) * sign > 0:
            targets = [entry + sign * k * risk for k in R_MULTIPLES]
            if all(t > 0 for t in targets):
                offer("targets", "2", targets, "calc:1R/2R/3R", "Tier 2: targets from entry/stop")
    if mfe_snapshot is not None and measured is None:
        p, src = mfe_snapshot.payload, f"MFE_UPDATE#{mfe_snapshot.event_id}"
        mfe, mae = _nonnegative(p.get("mfe")), _nonnegative(p.get("mae"))
        offer("mfe", "2", mfe, src, "Tier 2: last MFE_UPDATE")
        offer("mae", "2", mae, src, "Tier 2: last MFE_UPDATE")
        risk = abs(entry - stop) if entry is not None and stop is not None else 0.0
        if risk > 0:
            offer("mfe_price", "2", None if mfe is None else mfe * risk, src, "Tier 2: R x risk")
            offer("mae_price", "2", None if mae is None else mae * risk, src, "Tier 2: R x risk")
        offer("highest", "2", price(p.get("highest")), src, "Tier 2: last MFE_UPDATE")
        offer("lowest", "2", price(p.get("lowest")), src, "Tier 2: last MFE_UPDATE")
    return out


def _nonnegative(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def plan_changes(row: Mapping[str, Any], proposals: Mapping[str, Candidate]) -> list[FieldChange]:
    """Apply the write rule to one signal: per field, the best candidate wins if the field
    is empty, if it is strictly more confident, or (``REFRESHABLE``) if the same tier
    measured a different value."""
    provenance: Mapping[str, Any] = row["field_provenance"] or {}
    changes: list[FieldChange] = []
    # the offered fields only (a handful of the SYNC_FIELDS), in SYNC_FIELDS order
    for name in sorted(proposals.keys() & _FIELD_RANK.keys(), key=_FIELD_RANK.__getitem__):
        best = proposals[name]
        if not _open_to(row, provenance, name, best.tier):
            continue
        current = row[name]
        confidence = (provenance.get(name) or {}).get("confidence")
        held = None if confidence is None else float(confidence)  # (None only if empty)
        # open but not more confident: a refreshable measure, written if it changed
        if held is not None and best.confidence <= held and _same(current, best.value):
            continue
        changes.append(
            FieldChange(
                row["signal_id"],
                name,
                current,
                best.value,
                best.tier,
                best.confidence,
                held,
                best.source,
                best.reason,
            )
        )
    return changes


# --- loading and writing ------------------------------------------------------------------


def latest_events(
    conn: Connection, signal_ids: Sequence[str], event_type: str
) -> dict[str, LatestEvent]:
    """The latest ``event_type`` event of each signal (for SIGNAL_CREATED an index-only
    max over the partial index, then a primary-key fetch)."""
    latest = (
        select(signal_events.c.signal_id, func.max(signal_events.c.event_id).label("event_id"))
        .where(
            signal_events.c.event_type == event_type,
            in_ids(conn, signal_events.c.signal_id, signal_ids),
        )
        .group_by(signal_events.c.signal_id)
        .subquery()
    )
    query = select(
        signal_events.c.signal_id,
        signal_events.c.event_id,
        signal_events.c.event_time,
        signal_events.c.payload,
    ).join(latest, signal_events.c.event_id == latest.c.event_id)
    return {
        r.signal_id: LatestEvent(int(r.event_id), r.event_time, r.payload or {})
        for r in conn.execute(query).all()
    }


def latest_told(
    signal_ids: Sequence[str], event_type: str, known: Mapping[str, KnownEvents] | None
) -> tuple[dict[str, LatestEvent], list[str]]:
    """The latest ``event_type`` event of each signal that ``known`` can tell (absent when
    it tells there is none), and the ids whose answer only the database has."""
    told: dict[str, LatestEvent] = {}
    ask: list[str] = []
    for signal_id in signal_ids:
        events = known.get(signal_id) if known else None
        found = False if events is None else events.latest(event_type)
        if found is False:
            ask.append(signal_id)
        elif isinstance(found, EventRow):
            told[signal_id] = LatestEvent(found.event_id, found.event_time, found.payload)
    return told, ask


def latest_known(
    conn: Connection,
    signal_ids: Sequence[str],
    event_type: str,
    known: Mapping[str, KnownEvents] | None = None,
    looked_up: dict[str, LatestEvent | None] | None = None,
) -> dict[str, LatestEvent]:
    """:func:`latest_events`, answered from events already loaded where they tell.
    ``looked_up``: filled with the database's answer for each id it was asked about (None:
    the signal has no such event), for a later caller in the same transaction."""
    told, ask = latest_told(signal_ids, event_type, known)
    if not ask:
        return told
    found = latest_events(conn, ask, event_type)
    if looked_up is not None:
        looked_up.update((signal_id, found.get(signal_id)) for signal_id in ask)
    return told | found


TIER0_FIELDS: tuple[str, ...] = (
    "htf_alignment",
    "session",
    "market_state",
    "signal_time",
    "direction",
    "entry_price",
    "stop_loss",
    "targets",
)


# what Tier 0 reads of a row besides the SIGNAL_CREATED payload
_TIER0_INPUTS: tuple[str, ...] = (*TIER0_FIELDS, "confirmation_time", "confirmed_at")


def tier0_settled(
    before: Mapping[str, Any] | None,
    row: Mapping[str, Any],
    events: KnownEvents | None,
    reconciled_through: int,
) -> bool:
    """Whether Tier 0 is known to change nothing in ``row``, the fold of ``events`` onto
    ``before`` (the row as stored), without reading the SIGNAL_CREATED payload again:

    - every event of ``before`` is at or below ``reconciled_through`` (the ``reconcile``
      cursor): a completed reconciliation saw the row as stored, Tier 0 included;
    - the fold resumed from ``before`` (``events`` are only the new ones) and none of
      them is a SIGNAL_CREATED: the latest SIGNAL_CREATED is the one Tier 0 already used;
    - the fold left every field Tier 0 reads or writes as it was (value and confidence):
      a field it could not fill then, it cannot fill now.

    Tier 0 is then a pure function of unchanged inputs, and the reconciliation of
    ``before`` already applied its result. A resumed MFE_UPDATE on a trade whose targets
    come from Tier 2 — the commonest event — is the case this serves."""
    if before is None or events is None or events.complete:
        return False
    if before["last_event_id"] > reconciled_through:
        return False
    if any(e.event_type == "SIGNAL_CREATED" for e in events.events):
        return False
    held: Mapping[str, Any] = before["field_provenance"] or {}
    now_held: Mapping[str, Any] = row["field_provenance"] or {}
    for name in _TIER0_INPUTS:
        if row[name] != before[name]:
            return False
        entry, was = now_held.get(name), held.get(name)
        # (the fold shares the entries it leaves alone: the same object, nothing to compare)
        if entry is not was and (entry or {}).get("confidence") != (was or {}).get("confidence"):
            return False
    return True


def needs_tier0(row: Mapping[str, Any]) -> bool:
    """Whether a SIGNAL_CREATED could still improve a field of ``row`` (some Tier-0 field
    empty or held below 1.0). Lets a warm sync skip reading payloads it cannot use."""
    provenance: Mapping[str, Any] = row["field_provenance"] or {}
    for name in (*TIER0_FIELDS, "confirmation_time"):
        if name == "confirmation_time" and row["confirmed_at"] is None:
            continue
        held = provenance.get(name)
        if row[name] is None or held is None or float(held.get("confidence", 0)) < 1.0:
            return True
    return False


def _needs_candles(row: Mapping[str, Any]) -> bool:
    if row["confirmed_at"] is None or row["entry_price"] is None:
        return False
    if row["direction"] not in ("LONG", "SHORT"):
        return False
    return _not_final(row)


def _not_final(row: Mapping[str, Any]) -> bool:
    if row["closed_at"] is None:
        return True
    held = (row["field_provenance"] or {}).get("mfe") or {}
    # a closed trade measured after its exit from candles is final: skip its candles
    measured_at = _parse_time(held.get("at"))
    return not (held.get("tier") == "1" and measured_at and measured_at >= row["closed_at"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass
class ReconcileResult:
    signals_seen: int = 0
    signals_changed: int = 0
    fields_changed: int = 0
    by_field: dict[str, int] = field(default_factory=dict)
    by_tier: dict[str, int] = field(default_factory=dict)
    symbols_with_candles: dict[str, bool] = field(default_factory=dict, repr=False)

    def absorb(self, other: ReconcileResult) -> None:
        """Add ``other``'s counts to these."""
        self.signals_seen += other.signals_seen
        self.signals_changed += other.signals_changed
        self.fields_changed += other.fields_changed
        for mine, theirs in ((self.by_field, other.by_field), (self.by_tier, other.by_tier)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n


def reconcile_rows(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    now: datetime,
    sync_run_id: str,
    result: ReconcileResult,
) -> None:
    """Reconcile already-loaded registry rows inside the caller's transaction."""
    updates, audits = plan_rows(conn, rows, now, sync_run_id, result)
    if updates:
        update_by_id(conn, updates)
        insert_rows(conn, sync_audit_log, audits)


def plan_rows(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    now: datetime,
    sync_run_id: str,
    result: ReconcileResult,
    known: Mapping[str, KnownEvents] | None = None,
    created_looked_up: dict[str, LatestEvent | None] | None = None,
    tier0_done: Container[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What reconciling ``rows`` writes, without writing it: the ``UPDATE`` rows (by
    ``b_id``) and the audit rows. Each row is updated in place with its new values (and
    its whole new provenance). Reads events and candles, never ``signals``; ``known``:
    events the caller loaded (the fold's), which answer "latest of a type" where they can;
    ``created_looked_up``: receives the SIGNAL_CREATED events read from the database
    (:func:`latest_known`); ``tier0_done``: signals whose Tier 0 cannot change anything
    (:func:`tier0_settled`) — their payload is not read."""
    ids = [r["signal_id"] for r in rows if r["signal_id"] not in tier0_done and needs_tier0(r)]
    # a row that needs no Tier 0 has every phase-1 field held at 1.0: nothing to do there
    phase1 = set(ids)
    created = latest_known(conn, ids, "SIGNAL_CREATED", known, created_looked_up) if ids else {}
    confirmed = [r["signal_id"] for r in rows if r["confirmed_at"] is not None]
    snapshots = latest_known(conn, confirmed, "MFE_UPDATE", known) if confirmed else {}
    to_measure = [r for r in rows if r["confirmed_at"] is not None and _not_final(r)]
    candle_data = load_candles(conn, to_measure, now, result.symbols_with_candles)
    stamp = now.isoformat()
    updates: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for row in rows:
        signal_id = row["signal_id"]
        result.signals_seen += 1
        # ``work``: the row as its changes so far leave it — copied at the first change
        work: dict[str, Any] = row
        changes: list[FieldChange] = []
        # phase 1: identity, levels and metadata; phase 2: excursions, which need the
        # targets / stop that phase 1 may just have filled
        for measuring in (False, True):
            if not measuring and signal_id not in phase1:
                continue
            measured = None
            if measuring and _needs_candles(work):
                measured = candle_excursion(work, candle_data.get(work["symbol"]), now)
            snapshot = snapshots.get(signal_id) if measuring else None
            # phase 2 leaves Tier 0 out: after phase 1 each field it offers holds its value
            # at 1.0, or is blocked by what still blocks it (no field it offers refreshes)
            created_event = None if measuring else created.get(signal_id)
            proposals = candidates(work, created_event, snapshot, measured)
            for change in plan_changes(work, proposals) if proposals else ():
                if work is row:
                    work = dict(row)
                    work["field_provenance"] = dict(row["field_provenance"] or {})
                work[change.field] = change.new
                work["field_provenance"][change.field] = {
                    "tier": change.tier,
                    "confidence": change.confidence,
                    "source": change.source,
                    "at": stamp,
                }
                changes.append(change)
        if not changes:
            continue
        provenance = work["field_provenance"]
        values = {change.field: work[change.field] for change in changes}
        for change in changes:
            audits.append(
                {
                    "sync_run_id": sync_run_id,
                    "signal_id": signal_id,
                    "field": change.field,
                    "old_value": _jsonable(change.old),
                    "new_value": _jsonable(change.new),
                    "tier": change.tier,
                    "confidence": change.confidence,
                    "old_confidence": change.old_confidence,
                    "reason": change.reason,
                    "action_timestamp": now,
                }
            )
            result.by_field[change.field] = result.by_field.get(change.field, 0) + 1
            result.by_tier[change.tier] = result.by_tier.get(change.tier, 0) + 1
        update = {
            **values,
            # the keys that changed are known: no document comparison
            "field_provenance": JsonMerge(
                {c.field: provenance[c.field] for c in changes}, provenance
            ),
            "data_confidence": mean_confidence(provenance),
            "updated_at": now,
        }
        updates.append({**update, "b_id": signal_id})
        # the row now holds what was written (it may be the cycle's cached row)
        row.update(update)
        row["field_provenance"] = provenance
        result.signals_changed += 1
        result.fields_changed += len(changes)
    return updates, audits


def reconcile(
    engine: Engine,
    signal_ids: Sequence[str] | None,
    now: datetime,
    sync_run_id: str,
    chunk_size: int = 2000,
    cache: RegistryRows | None = None,
) -> ReconcileResult:
    """Reconcile ``signal_ids`` (None = every signal). Each chunk of signals commits in its
    own transaction: a signal's fields, provenance and audit rows land together or not.
    ``cache``: the cycle's registry rows (read through it; the rows are updated in place
    with what is written)."""
    result = ReconcileResult()
    with engine.connect() as conn:
        ids = list(signal_ids) if signal_ids is not None else all_signal_ids(conn)
    for chunk in chunked(sorted(set(ids)), chunk_size):
        with derived_write(engine) as conn:
            rows = list(load_rows(conn, chunk, cache).values())
            reconcile_rows(conn, rows, now, sync_run_id, result)
    return result


def all_signal_ids(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(select(signals.c.signal_id).order_by(signals.c.signal_id))]


def mfe_provenance(key: str) -> ColumnElement[Any]:
    """``field_provenance.mfe.<key>`` as text (SQL)."""
    return signals.c.field_provenance["mfe"][key].as_string()


def _iso_time(conn: Connection, value: ColumnElement[Any]) -> ColumnElement[Any]:
    # the provenance stamp is an ISO string; both sides comparable on either dialect
    if conn.dialect.name == "sqlite":
        return func.julianday(value)
    return cast(value, DateTime(timezone=True))


def tier1_signal_ids(conn: Connection) -> list[str]:
    """Trades Tier 1 may (re)measure — the only reconciliation input that changes with time
    alone: confirmed, not final (:func:`_not_final`), on a symbol that has candles."""
    closed_at = signals.c.closed_at
    measured_before_close = _iso_time(conn, mfe_provenance("at")) < _iso_time(conn, closed_at)
    query = select(signals.c.signal_id).where(
        signals.c.confirmed_at.is_not(None),
        or_(
            closed_at.is_(None),
            func.coalesce(mfe_provenance("tier"), "") != "1",
            mfe_provenance("at").is_(None),
            measured_before_close,
        ),
        exists(select(candles.c.symbol).where(candles.c.symbol == signals.c.symbol)),
    )
    return [r[0] for r in conn.execute(query)]


def signals_audited_after(conn: Connection, audit_id: int, head: int) -> list[str]:
    """Signals with an audit row in ``(audit_id, head]`` (primary-key range)."""
    query = (
        select(sync_audit_log.c.signal_id)
        .where(sync_audit_log.c.audit_id > audit_id, sync_audit_log.c.audit_id <= head)
        .distinct()
    )
    return [r[0] for r in conn.execute(query)]
