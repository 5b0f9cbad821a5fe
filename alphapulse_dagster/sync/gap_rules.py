"""The gap rules: what a signal can be missing, how much it matters, and who can fill it.

Each rule (:class:`GapDefinition`) is one entry of :data:`GAP_RULES` — its name, its
detector, its default weight and kind (``config.py`` takes its defaults from here;
``hybrid_sync.gap_rules`` in ``mtf_config.yaml`` may override them) and, for a gap that
opens with time alone, the SQL predicate that finds the signals where it is due, so that a
scheduled sync re-checks exactly those. ``GAP_TYPES``, the config defaults, the report
contract and the sync's scope all derive from this list.

Adding a gap type: add a detector and an entry below (a test in
``tests/test_gaps_health.py`` opening and filling it). "Ever confirmed" means
``confirmed_at`` is set or the status is CONFIRMED / CLOSED.

A detector returns None when the gap is not open, else whether some tier can fill it (a
gap nobody can fill counts toward ``manual_intervention`` in the health report).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from sqlalchemy import and_, func, not_, or_
from sqlalchemy.sql.elements import ColumnElement

from alphapulse_dagster.db.tables import signals
from alphapulse_dagster.sync.final_trades import MEASURED_FROM_CANDLES
from alphapulse_dagster.sync.lifecycle import CLOSED, CONFIRMED
from alphapulse_dagster.sync.payload_values import price, price_list
from alphapulse_dagster.sync.trade_id import parse_trade_id

if TYPE_CHECKING:
    from alphapulse_dagster.config import HybridSyncConfig

GapKind = Literal["actionable", "expected"]
METADATA_FIELDS: tuple[str, ...] = ("session", "market_state", "signal_time", "direction")


class GapInputs(NamedTuple):
    """What a detector sees besides the registry row: whether the signal has a
    SIGNAL_CREATED, its payload (empty when not loaded: no rule needs it then), the time
    and the sync's config."""

    has_created: bool
    payload: Mapping[str, Any]
    now: datetime
    config: HybridSyncConfig


Detector = Callable[[Mapping[str, Any], GapInputs], bool | None]
# the signals whose time-driven gap is due at ``now`` (SQL over ``signals``)
DuePredicate = Callable[[datetime, "HybridSyncConfig"], ColumnElement[bool]]


@dataclass(frozen=True)
class GapDefinition:
    name: str
    detect: Detector
    weight: float  # default, 0-100: what an open gap takes off the signal's score
    kind: GapKind  # default: "expected" while a trade runs normally, else "actionable"
    due: DuePredicate | None = None  # only for gaps that open with time alone


def ever_confirmed(row: Mapping[str, Any]) -> bool:
    return row["confirmed_at"] is not None or row["status"] in (CONFIRMED, CLOSED)


def _no_signal_created(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    # nobody can fill it: the indicator must send it
    return False if ever_confirmed(row) and not facts.has_created else None


def _no_htf_alignment(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    return None if row["htf_alignment"] else bool(facts.payload.get("htf_alignment"))


def _no_confirmation_time(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    if ever_confirmed(row) and row["confirmation_time"] is None:
        return facts.has_created  # Tier 0 computes it from the SIGNAL_CREATED time
    return None


def _no_entry_price(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    if ever_confirmed(row) and row["entry_price"] is None:
        return price(facts.payload.get("entry_price")) is not None
    return None


def _no_stop_loss(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    if ever_confirmed(row) and row["stop_loss"] is None:
        return price(facts.payload.get("stop_loss")) is not None
    return None


def _no_targets(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    if not ever_confirmed(row) or row["targets"]:
        return None
    computable = (  # Tier 2: 1R/2R/3R from entry, stop and direction
        row["entry_price"] is not None
        and row["stop_loss"] is not None
        and row["direction"] in ("LONG", "SHORT")
    )
    return computable or price_list(facts.payload.get("targets")) is not None


def _no_mfe_update(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    """An active trade not measured from candles, without an MFE update within the
    window (expected while fresh; the next MFE_UPDATE or candles fill it)."""
    if row["status"] != CONFIRMED or MEASURED_FROM_CANDLES.holds(row):
        return None
    reference = row["last_mfe_update_at"] or row["confirmed_at"] or row["created_at"]
    window = timedelta(minutes=facts.config.mfe_update_window_minutes)
    return True if reference is None or facts.now - reference > window else None


def _mfe_update_due(now: datetime, config: HybridSyncConfig) -> ColumnElement[bool]:
    """:func:`_no_mfe_update` in SQL."""
    reference = func.coalesce(
        signals.c.last_mfe_update_at, signals.c.confirmed_at, signals.c.created_at
    )
    return and_(
        signals.c.status == CONFIRMED,
        not_(MEASURED_FROM_CANDLES.sql()),
        or_(
            reference.is_(None),
            reference < now - timedelta(minutes=config.mfe_update_window_minutes),
        ),
    )


def _no_mae(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    # expected while the trade runs (Tier 1 / Tier 2 fill it); a closed trade: manual
    return row["status"] == CONFIRMED if ever_confirmed(row) and row["mae"] is None else None


def _no_metadata(row: Mapping[str, Any], facts: GapInputs) -> bool | None:
    missing = {name for name in METADATA_FIELDS if row[name] in (None, "")}
    if not missing:
        return None
    # Tier 0 fills all of them; Tier 3 (trade_id) only the time and the direction
    parseable = parse_trade_id(row["trade_id"]) is not None
    return facts.has_created or (parseable and missing <= {"signal_time", "direction"})


GAP_RULES: tuple[GapDefinition, ...] = (
    GapDefinition("no_signal_created", _no_signal_created, 15, "actionable"),
    GapDefinition("no_htf_alignment", _no_htf_alignment, 15, "actionable"),
    GapDefinition("no_confirmation_time", _no_confirmation_time, 10, "actionable"),
    GapDefinition("no_entry_price", _no_entry_price, 20, "actionable"),
    GapDefinition("no_stop_loss", _no_stop_loss, 15, "actionable"),
    GapDefinition("no_targets", _no_targets, 10, "actionable"),
    GapDefinition("no_mfe_update", _no_mfe_update, 5, "expected", due=_mfe_update_due),
    GapDefinition("no_mae", _no_mae, 5, "expected"),
    GapDefinition("no_metadata", _no_metadata, 5, "actionable"),
)
GAP_TYPES: tuple[str, ...] = tuple(rule.name for rule in GAP_RULES)
TIME_DRIVEN_GAPS: tuple[GapDefinition, ...] = tuple(r for r in GAP_RULES if r.due is not None)


def needs_payload(row: Mapping[str, Any]) -> bool:
    """Whether a SIGNAL_CREATED payload can decide a gap's fillability for ``row`` (the
    gaps Tier 0 could fill: HTF alignment, metadata, entry / stop / targets)."""
    if not row["htf_alignment"] or any(row[name] in (None, "") for name in METADATA_FIELDS):
        return True
    return ever_confirmed(row) and (
        row["entry_price"] is None or row["stop_loss"] is None or not row["targets"]
    )
