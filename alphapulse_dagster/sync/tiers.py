"""The tiers' proposals and the write rule of reconciliation (SPEC §9), for one signal.

Tiers, tried from the highest confidence down, field by field:

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
                  since entry, ``target_hit`` / ``stop_hit`` (``excursions.py``)
3     0.9         ``trade_id`` parsing (``YYYYMMDD_HHMMSS_<DIR>[_<symbol>]``, UTC):
                  ``signal_time``, ``direction`` (``trade_id.py``)
2     0.8         database calculation: ``targets`` at 1R/2R/3R from entry and stop; MFE /
                  MAE from the latest MFE_UPDATE snapshot when no candles cover the trade
====  ==========  ==========================================================================

A field is written only when it is empty or the new confidence is strictly higher, so a
confidence never goes down. One exception keeps running measures honest: the trade
extremes (``REFRESHABLE``) are re-measured by the *same* tier while a trade runs (more
candles, a newer MFE_UPDATE) and change when the measurement changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from alphapulse_dagster.clock import parse_utc_time
from alphapulse_dagster.direction import normalise_direction
from alphapulse_dagster.sync.excursions import Excursion
from alphapulse_dagster.sync.payload_values import price, price_list
from alphapulse_dagster.sync.signal_facts import LatestEvent
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


def _nonempty_mapping(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) and value else None


def _text(value: Any) -> str | None:
    return value.strip()[:32] if isinstance(value, str) and value.strip() else None


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
        signal_time = _time_or_none(p.get("signal_time")) or created.event_time
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
    if not proposals:  # (a settled row: the commonest case)
        return []
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


def _time_or_none(value: Any) -> Any:
    """A payload time (:func:`~alphapulse_dagster.clock.parse_utc_time`), None if absent
    or unreadable."""
    if value is None:
        return None
    try:
        return parse_utc_time(value)
    except ValueError:
        return None
