"""Gap detection: what each signal is missing, how much it matters, and who can fill it.

The nine gap types of SPEC §9 (weight and kind — actionable / expected — from
``hybrid_sync.gap_rules``). "Ever confirmed" means ``confirmed_at`` is set or the status is
CONFIRMED / CLOSED.

======================  ======================================  ==========================
gap                     open when                               fillable by
======================  ======================================  ==========================
no_signal_created       ever confirmed, no SIGNAL_CREATED        nobody (the indicator
                        event                                    must send it) → manual
no_htf_alignment        ``htf_alignment`` empty                  Tier 0 (SIGNAL_CREATED
                                                                 carrying it)
no_confirmation_time    ever confirmed, ``confirmation_time``    Tier 0 (needs a
                        empty                                    SIGNAL_CREATED)
no_entry_price          ever confirmed, no entry price           Tier 0 (payload has it)
no_stop_loss            ever confirmed, no stop                  Tier 0 (payload has it)
no_targets              ever confirmed, no targets               Tier 0, or Tier 2 from
                                                                 entry + stop + direction
no_mfe_update           CONFIRMED (active), MFE not measured     expected: the next
                        from candles, and no MFE_UPDATE within   MFE_UPDATE or candles
                        ``mfe_update_window_minutes``            (Tier 1 / Tier 2)
no_mae                  ever confirmed, ``mae`` empty            expected while active
                                                                 (Tier 1 / Tier 2); a
                                                                 closed trade → manual
no_metadata             session, market_state, signal_time or    Tier 0; Tier 3 when only
                        direction empty                          time/direction missing
======================  ======================================  ==========================

A gap nobody can fill counts toward ``manual_intervention`` in the health report.
Per-signal health score = 100 − Σ weights of its open gaps, floored at 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    union,
)

from alphapulse_dagster.config import HybridSyncConfig
from alphapulse_dagster.db.bulk import in_ids, insert_rows, update_rows
from alphapulse_dagster.db.engine import derived_write
from alphapulse_dagster.db.tables import signal_events, signal_gaps, signals
from alphapulse_dagster.sync.lifecycle import CLOSED, CONFIRMED, KnownEvents, price, price_list
from alphapulse_dagster.sync.projection import chunked, update_by_id
from alphapulse_dagster.sync.reconcile import (
    LatestEvent,
    all_signal_ids,
    latest_events,
    latest_told,
    mfe_provenance,
)
from alphapulse_dagster.sync.registry_rows import RegistryRows
from alphapulse_dagster.sync.trade_id import parse_trade_id

GAP_TYPES: tuple[str, ...] = (
    "no_signal_created",
    "no_htf_alignment",
    "no_confirmation_time",
    "no_entry_price",
    "no_stop_loss",
    "no_targets",
    "no_mfe_update",
    "no_mae",
    "no_metadata",
)
METADATA_FIELDS: tuple[str, ...] = ("session", "market_state", "signal_time", "direction")


class Gap(NamedTuple):
    signal_id: str
    gap_type: str
    kind: str  # actionable | expected
    weight: float
    fillable: bool


def ever_confirmed(row: Mapping[str, Any]) -> bool:
    return row["confirmed_at"] is not None or row["status"] in (CONFIRMED, CLOSED)


def detect_gaps(
    row: Mapping[str, Any],
    created: LatestEvent | None,
    now: datetime,
    config: HybridSyncConfig,
) -> list[Gap]:
    """The open gaps of one registry row. ``created`` is the signal's latest SIGNAL_CREATED
    event (None when it has none)."""
    payload: Mapping[str, Any] = created.payload if created is not None else {}
    confirmed = ever_confirmed(row)
    provenance: Mapping[str, Any] = row["field_provenance"] or {}
    found: list[tuple[str, bool]] = []

    if confirmed and created is None:
        found.append(("no_signal_created", False))
    if not row["htf_alignment"]:
        found.append(("no_htf_alignment", bool(payload.get("htf_alignment"))))
    if confirmed and row["confirmation_time"] is None:
        found.append(("no_confirmation_time", created is not None))
    if confirmed and row["entry_price"] is None:
        found.append(("no_entry_price", price(payload.get("entry_price")) is not None))
    if confirmed and row["stop_loss"] is None:
        found.append(("no_stop_loss", price(payload.get("stop_loss")) is not None))
    if confirmed and not row["targets"]:
        computable = (
            row["entry_price"] is not None
            and row["stop_loss"] is not None
            and row["direction"] in ("LONG", "SHORT")
        )
        found.append(("no_targets", computable or price_list(payload.get("targets")) is not None))
    if row["status"] == CONFIRMED and (provenance.get("mfe") or {}).get("tier") != "1":
        reference = row["last_mfe_update_at"] or row["confirmed_at"] or row["created_at"]
        window = timedelta(minutes=config.mfe_update_window_minutes)
        if reference is None or now - reference > window:
            found.append(("no_mfe_update", True))
    if confirmed and row["mae"] is None:
        found.append(("no_mae", row["status"] == CONFIRMED))
    missing = {name for name in METADATA_FIELDS if row[name] in (None, "")}
    if missing:
        parseable = parse_trade_id(row["trade_id"]) is not None
        fillable = created is not None or (parseable and missing <= {"signal_time", "direction"})
        found.append(("no_metadata", fillable))

    gaps = []
    for gap_type, fillable in found:
        rule = config.gap_rules[gap_type]
        gaps.append(Gap(row["signal_id"], gap_type, rule.kind, rule.weight, fillable))
    return gaps


def signal_health_score(gaps: Iterable[Gap]) -> float:
    """100 − Σ weights of the open gaps, floored at 0."""
    return max(0.0, 100.0 - sum(g.weight for g in gaps))


@dataclass
class GapResult:
    signals_scanned: int = 0
    opened: int = 0
    resolved: int = 0
    open_total: int = 0  # open gaps of the scanned signals after this pass
    by_type: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.by_type is None:
            self.by_type = dict.fromkeys(GAP_TYPES, 0)

    def absorb(self, other: GapResult) -> None:
        """Add ``other``'s counts to these."""
        self.opened += other.opened
        self.resolved += other.resolved
        self.open_total += other.open_total
        self.signals_scanned += other.signals_scanned
        assert self.by_type is not None and other.by_type is not None
        for gap_type, n in other.by_type.items():
            self.by_type[gap_type] = self.by_type.get(gap_type, 0) + n


def time_driven_gap_ids(conn: Connection, now: datetime, config: HybridSyncConfig) -> list[str]:
    """Signals whose ``no_mfe_update`` gap (the only gap that opens with time alone) is due
    to open, or is open but no longer due — the SQL twin of that rule in
    :func:`detect_gaps`, compared with the open gap rows."""
    reference = func.coalesce(
        signals.c.last_mfe_update_at, signals.c.confirmed_at, signals.c.created_at
    )
    due = and_(
        signals.c.status == CONFIRMED,
        func.coalesce(mfe_provenance("tier"), "") != "1",
        or_(
            reference.is_(None),
            reference < now - timedelta(minutes=config.mfe_update_window_minutes),
        ),
    )
    is_open = exists(
        select(signal_gaps.c.gap_id).where(
            signal_gaps.c.signal_id == signals.c.signal_id,
            signal_gaps.c.gap_type == "no_mfe_update",
            signal_gaps.c.resolved_at.is_(None),
        )
    )
    # two indexed halves: active trades (status index) and open no_mfe_update gaps
    opening = select(signals.c.signal_id).where(signals.c.status == CONFIRMED, due, ~is_open)
    closing = (
        select(signals.c.signal_id)
        .join(signal_gaps, signal_gaps.c.signal_id == signals.c.signal_id)
        .where(
            signal_gaps.c.gap_type == "no_mfe_update",
            signal_gaps.c.resolved_at.is_(None),
            ~due,
        )
    )
    return [r[0] for r in conn.execute(union(opening, closing))]


def stale_score_ids(conn: Connection, config: HybridSyncConfig) -> list[str]:
    """Signals whose ``health_score`` does not match their open gaps under the current
    weights: never scanned (NULL), or the weights changed. A full pass re-detects them."""
    weight = case(
        *((signal_gaps.c.gap_type == name, rule.weight) for name, rule in config.gap_rules.items()),
        else_=signal_gaps.c.weight,
    )
    open_weight = (
        select(signal_gaps.c.signal_id, func.sum(weight).label("w"))
        .where(signal_gaps.c.resolved_at.is_(None))
        .group_by(signal_gaps.c.signal_id)
        .subquery()
    )
    expected = 100.0 - func.coalesce(open_weight.c.w, 0.0)
    expected = case((expected < 0.0, 0.0), else_=expected)
    query = (
        select(signals.c.signal_id)
        .select_from(signals.outerjoin(open_weight, open_weight.c.signal_id == signals.c.signal_id))
        .where(
            or_(
                signals.c.health_score.is_(None),
                func.abs(signals.c.health_score - expected) > 1e-6,
            )
        )
    )
    return [r[0] for r in conn.execute(query)]


def _needs_payload(row: Mapping[str, Any]) -> bool:
    # the payload only decides fillability of gaps Tier 0 could fill
    if not row["htf_alignment"] or any(row[name] in (None, "") for name in METADATA_FIELDS):
        return True
    return ever_confirmed(row) and (
        row["entry_price"] is None or row["stop_loss"] is None or not row["targets"]
    )


def _created_events(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    known: Mapping[str, KnownEvents] | None = None,
    looked_up: Mapping[str, LatestEvent | None] | None = None,
) -> dict[str, LatestEvent]:
    """Latest SIGNAL_CREATED per row: ids from the partial index for all, payloads only
    where a gap's fillability depends on them. ``known``: events already loaded, used
    where they tell (:meth:`KnownEvents.latest`); ``looked_up``: answers the database
    already gave in this transaction (:func:`reconcile.latest_known`)."""
    told, unknown = latest_told([r["signal_id"] for r in rows], "SIGNAL_CREATED", known)
    looked_up = looked_up or {}
    ask = [i for i in unknown if i not in looked_up]
    told.update((i, e) for i in unknown if (e := looked_up.get(i)) is not None)
    if not ask:
        return told
    asked = set(ask)
    return told | _asked_created_events(conn, [r for r in rows if r["signal_id"] in asked])


def _asked_created_events(
    conn: Connection, rows: Sequence[Mapping[str, Any]]
) -> dict[str, LatestEvent]:
    ids = [r["signal_id"] for r in rows]
    query = (
        select(signal_events.c.signal_id, func.max(signal_events.c.event_id))
        .where(
            signal_events.c.event_type == "SIGNAL_CREATED",
            in_ids(conn, signal_events.c.signal_id, ids),
        )
        .group_by(signal_events.c.signal_id)
    )
    found = {signal_id: int(event_id) for signal_id, event_id in conn.execute(query)}
    wanted = [r["signal_id"] for r in rows if r["signal_id"] in found and _needs_payload(r)]
    full = latest_events(conn, wanted, "SIGNAL_CREATED") if wanted else {}
    epoch = datetime.fromtimestamp(0, tz=UTC)
    return {
        signal_id: full.get(signal_id) or LatestEvent(event_id, epoch, {})
        for signal_id, event_id in found.items()
    }


@dataclass
class GapPlan:
    """What a gap pass writes: new gap rows, the ids of gaps that closed, and the
    ``health_score`` rows (``b_id``) of signals whose score changed."""

    inserts: list[dict[str, Any]]
    resolved: list[int]
    scores: list[dict[str, Any]]


def plan_gap_rows(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    now: datetime,
    sync_run_id: str,
    config: HybridSyncConfig,
    result: GapResult,
    known: Mapping[str, KnownEvents] | None = None,
    created_looked_up: Mapping[str, LatestEvent | None] | None = None,
) -> GapPlan:
    """Detect the gaps of ``rows`` against their open ``signal_gaps``, without writing.
    A changed score is also set on the row itself (it may be the cycle's cached row).
    ``known`` / ``created_looked_up``: see :func:`_created_events`."""
    ids = [r["signal_id"] for r in rows]
    created = _created_events(conn, rows, known, created_looked_up)
    open_rows = conn.execute(
        select(signal_gaps.c.gap_id, signal_gaps.c.signal_id, signal_gaps.c.gap_type).where(
            in_ids(conn, signal_gaps.c.signal_id, ids), signal_gaps.c.resolved_at.is_(None)
        )
    ).all()
    existing: dict[str, dict[str, int]] = {}
    for r in open_rows:
        existing.setdefault(r.signal_id, {})[r.gap_type] = int(r.gap_id)
    plan = GapPlan([], [], [])
    assert result.by_type is not None
    for row in rows:
        gaps = detect_gaps(row, created.get(row["signal_id"]), now, config)
        held = existing.get(row["signal_id"], {})
        current = {g.gap_type for g in gaps}
        for gap in gaps:
            result.by_type[gap.gap_type] += 1
            if gap.gap_type not in held:
                plan.inserts.append(
                    {
                        "signal_id": gap.signal_id,
                        "gap_type": gap.gap_type,
                        "kind": gap.kind,
                        "weight": gap.weight,
                        "fillable": gap.fillable,
                        "detected_at": now,
                        "resolved_at": None,
                        "sync_run_id": sync_run_id,
                    }
                )
        plan.resolved.extend(gap_id for gap_type, gap_id in held.items() if gap_type not in current)
        score = signal_health_score(gaps)
        if row["health_score"] is None or float(row["health_score"]) != score:
            plan.scores.append({"b_id": row["signal_id"], "health_score": score})
            row["health_score"] = score  # what is written (the row may be a cached one)
        result.open_total += len(gaps)
        result.signals_scanned += 1
    return plan


def write_gap_rows(conn: Connection, plan: GapPlan, now: datetime, result: GapResult) -> None:
    """Insert the new gaps and close the resolved ones (the scores are the caller's). Only
    batch writes (:mod:`~alphapulse_dagster.db.bulk`): ``conn`` may be in pipeline mode."""
    if plan.inserts:
        insert_rows(conn, signal_gaps, plan.inserts)
        result.opened += len(plan.inserts)
    if plan.resolved:
        closed = [{"b_id": gap_id, "resolved_at": now} for gap_id in plan.resolved]
        update_rows(conn, signal_gaps, closed)
        result.resolved += len(plan.resolved)


def refresh_gap_rows(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    now: datetime,
    sync_run_id: str,
    config: HybridSyncConfig,
    result: GapResult,
) -> None:
    """Detect the gaps of ``rows`` and bring ``signal_gaps`` (open = ``resolved_at`` IS
    NULL) and ``signals.health_score`` in line, writing only differences."""
    plan = plan_gap_rows(conn, rows, now, sync_run_id, config, result)
    write_gap_rows(conn, plan, now, result)
    if plan.scores:
        update_by_id(conn, plan.scores)


def _gap_rows(conn: Connection, signal_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Registry rows for gap detection: the whole provenance document is not needed (only
    its ``mfe`` entry), so it is neither fetched nor decoded."""
    columns = [c for c in signals.columns if c.name != "field_provenance"]
    mfe = signals.c.field_provenance["mfe"].label("mfe_provenance")
    query = select(*columns, mfe).where(in_ids(conn, signals.c.signal_id, signal_ids))
    rows = []
    for r in conn.execute(query).mappings().all():
        row = dict(r)
        held = row.pop("mfe_provenance")
        row["field_provenance"] = {"mfe": held} if held is not None else {}
        rows.append(row)
    return rows


def refresh_gaps(
    engine: Engine,
    signal_ids: Sequence[str] | None,
    now: datetime,
    sync_run_id: str,
    config: HybridSyncConfig,
    chunk_size: int = 2000,
    cache: RegistryRows | None = None,
) -> GapResult:
    """Detect and persist the gaps of ``signal_ids`` (None = every signal), one
    transaction per chunk. ``cache``: the cycle's registry rows (full rows, kept current)."""
    result = GapResult()
    with engine.connect() as conn:
        ids = list(signal_ids) if signal_ids is not None else all_signal_ids(conn)
    for chunk in chunked(sorted(set(ids)), chunk_size):
        with derived_write(engine) as conn:
            rows = _gap_rows(conn, chunk) if cache is None else [*cache.load(conn, chunk).values()]
            refresh_gap_rows(conn, rows, now, sync_run_id, config, result)
    return result
