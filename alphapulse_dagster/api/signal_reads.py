"""The read API's signals: All Signals (``GET /signals``) and one signal's story
(``GET /signals/{id}``).

Reads only — the registry (``signals``) is written by the lifecycle projection and the
sync. ``GET /signals`` pages with a keyset on ``(first_event_id DESC, signal_id DESC)``:
newest signals first, stable under concurrent inserts (a new signal sorts before the
first page, so a walk that started earlier never loses or repeats an item). The cursor is
opaque (base64 of the last item's key).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import HTTPException, Path, Query, Request
from sqlalchemy import Connection, RowMapping, Select, and_, or_, select

from alphapulse_dagster.analytics.outcome_store import signal_outcome
from alphapulse_dagster.api.auth import token_router
from alphapulse_dagster.api.query_checks import app_engine, plain_text, query_error, utc_time
from alphapulse_dagster.api.read_models import SignalDetail, SignalItem, SignalPage, Status
from alphapulse_dagster.db.tables import (
    ai_signals_mtf,
    signal_events,
    signal_gaps,
    signals,
    sync_audit_log,
)
from alphapulse_dagster.sync.health import signal_moment
from alphapulse_dagster.sync.lifecycle import is_inferred_expiry

router = token_router()

MAX_LIMIT = 500
_MAX_BIGINT = 2**63 - 1


# --- cursor -------------------------------------------------------------------------------


def encode_cursor(first_event_id: int, signal_id: str) -> str:
    raw = json.dumps([first_event_id, signal_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Raises ``HTTPException(422)`` for anything that is not one of our cursors."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        first_event_id, signal_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if (
            isinstance(first_event_id, int)
            and not isinstance(first_event_id, bool)
            and 0 <= first_event_id <= _MAX_BIGINT
            and isinstance(signal_id, str)
            and "\x00" not in signal_id
        ):
            signal_id.encode("utf-8")
            return first_event_id, signal_id
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        pass
    raise HTTPException(status_code=422, detail=[query_error("cursor", "invalid cursor")])


# --- queries ------------------------------------------------------------------------------


def _open_gaps(connection: Connection, signal_ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {signal_id: [] for signal_id in signal_ids}
    if not signal_ids:
        return found
    rows = connection.execute(
        select(signal_gaps.c.signal_id, signal_gaps.c.gap_type)
        .where(signal_gaps.c.signal_id.in_(list(signal_ids)), signal_gaps.c.resolved_at.is_(None))
        .order_by(signal_gaps.c.signal_id, signal_gaps.c.gap_type)
    )
    for signal_id, gap_type in rows:
        if gap_type not in found[signal_id]:
            found[signal_id].append(gap_type)
    return found


def _entry_strategies(connection: Connection, signal_ids: Sequence[str]) -> dict[str, str]:
    if not signal_ids:
        return {}
    m = ai_signals_mtf.c
    rows = connection.execute(
        select(m.signal_id, m.entry_strategy).where(m.signal_id.in_(list(signal_ids)))
    )
    return {signal_id: strategy for signal_id, strategy in rows}


def _item(row: RowMapping, gaps: list[str]) -> dict[str, Any]:
    item = {name: row[name] for name in SignalItem.model_fields if name in row}
    item["gaps"] = gaps
    item["field_provenance"] = row["field_provenance"] or {}
    return item


def signal_page_query(
    *,
    status: str | None = None,
    symbol: str | None = None,
    source: str | None = None,
    direction: str | None = None,
    strategy: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    after: tuple[int, str] | None = None,
) -> Select[Any]:
    """The statement for one page of the registry, newest first, ``limit + 1`` rows (the
    extra one tells whether a next page exists). ``since`` is inclusive and ``until``
    exclusive, on the signal's moment (:func:`signal_moment`: the signal time, else the
    SIGNAL_CREATED time, else the ENTRY time). ``strategy`` keeps the AlphaPulse signals of
    that MTF entry strategy. The keyset, status and strategy have their own indexes
    (migration 0010), the moment its own (0003), symbol its (symbol, direction) one; source
    and direction have two values each, so the walk down the keyset index meets a match
    within a few rows."""
    query = select(signals)
    for column, value in (
        (signals.c.status, status),
        (signals.c.symbol, symbol),
        (signals.c.source, source),
        (signals.c.direction, direction),
    ):
        if value is not None:
            query = query.where(column == value)
    if strategy is not None:
        of_strategy = select(ai_signals_mtf.c.signal_id).where(
            ai_signals_mtf.c.entry_strategy == strategy
        )
        query = query.where(signals.c.signal_id.in_(of_strategy))
    if since is not None:
        query = query.where(signal_moment() >= since)
    if until is not None:
        query = query.where(signal_moment() < until)
    if after is not None:
        first_event_id, signal_id = after
        query = query.where(
            or_(
                signals.c.first_event_id < first_event_id,
                and_(signals.c.first_event_id == first_event_id, signals.c.signal_id < signal_id),
            )
        )
    query = query.order_by(signals.c.first_event_id.desc(), signals.c.signal_id.desc())
    return query.limit(limit + 1)


def list_signals(
    connection: Connection, *, limit: int = 100, **filters: Any
) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """One page of the registry (:func:`signal_page_query`); returns the items and the key
    to continue after (``None`` on the last page)."""
    rows = connection.execute(signal_page_query(limit=limit, **filters)).mappings().all()
    page, more = rows[:limit], len(rows) > limit
    ids = [row["signal_id"] for row in page]
    gaps, strategies = _open_gaps(connection, ids), _entry_strategies(connection, ids)
    items = [_item(row, gaps[row["signal_id"]]) for row in page]
    for item in items:
        item["entry_strategy"] = strategies.get(item["signal_id"])
    last = (int(page[-1]["first_event_id"]), str(page[-1]["signal_id"])) if more else None
    return items, last


def signal_detail(connection: Connection, signal_id: str) -> dict[str, Any] | None:
    """The registry row with its event timeline (event_time order), open gaps and audit
    trail; ``None`` when the registry does not know the signal."""
    row = connection.execute(select(signals).where(signals.c.signal_id == signal_id)).mappings()
    found = row.first()
    if found is None:
        return None
    gap_rows = connection.execute(
        select(signal_gaps)
        .where(signal_gaps.c.signal_id == signal_id, signal_gaps.c.resolved_at.is_(None))
        .order_by(signal_gaps.c.gap_type)
    ).mappings()
    gap_details = [dict(gap) for gap in gap_rows]
    item = _item(found, sorted({gap["gap_type"] for gap in gap_details}))
    item["entry_strategy"] = _entry_strategies(connection, [signal_id]).get(signal_id)
    item["gap_details"] = gap_details
    timeline = [
        dict(event)
        for event in connection.execute(
            select(signal_events)
            .where(signal_events.c.signal_id == signal_id)
            .order_by(signal_events.c.event_time, signal_events.c.event_id)
        ).mappings()
    ]
    expired = is_inferred_expiry(dict(found))
    for event in timeline:
        payload = event["payload"] or {}
        event["inferred"] = event["event_type"] == "CANCELLED" and payload.get("inferred") is True
        event["superseded"] = event["inferred"] and not expired
    item["events"] = timeline
    item["audit"] = [
        dict(audit)
        for audit in connection.execute(
            select(sync_audit_log)
            .where(sync_audit_log.c.signal_id == signal_id)
            .order_by(sync_audit_log.c.audit_id)
        ).mappings()
    ]
    item["outcome"] = signal_outcome(connection, signal_id)
    return item


# --- routes -------------------------------------------------------------------------------


@router.get("/signals", response_model=SignalPage, tags=["signals"], summary="All Signals")
def get_signals(
    request: Request,
    status: Status | None = None,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    source: Annotated[str | None, Query(max_length=16)] = None,
    direction: Literal["LONG", "SHORT"] | None = None,
    strategy: Annotated[
        str | None, Query(max_length=64, description="MTF entry strategy, e.g. FIBONACCI")
    ] = None,
    since: Annotated[datetime | None, Query(description="inclusive, UTC")] = None,
    until: Annotated[datetime | None, Query(description="exclusive, UTC")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(max_length=400, description="from next_cursor")] = None,
) -> dict[str, Any]:
    after = decode_cursor(cursor) if cursor else None
    with app_engine(request).connect() as connection:
        items, last = list_signals(
            connection,
            status=status,
            symbol=plain_text(symbol, "symbol"),
            source=plain_text(source, "source"),
            direction=direction,
            strategy=plain_text(strategy, "strategy"),
            since=utc_time(since, "since"),
            until=utc_time(until, "until"),
            limit=limit,
            after=after,
        )
    return {"items": items, "next_cursor": encode_cursor(*last) if last else None}


@router.get(
    "/signals/{signal_id:path}",
    response_model=SignalDetail,
    tags=["signals"],
    summary="One signal: registry row, event timeline, gaps, provenance, audit trail",
    responses={404: {"description": "not in the registry"}},
)
def get_signal(
    request: Request,
    signal_id: Annotated[
        str,
        Path(
            description="URL-encode the id (`%` as `%25`, `:` may stay): a TradingView id is "
            "`{symbol}:{trade_id}` with `%` and `:` percent-encoded in each part, e.g. "
            "`X%3Aa:b` is requested as `/signals/X%253Aa:b`. An id sent without encoding "
            "its `%` is found too when it names no other signal."
        ),
    ],
) -> dict[str, Any]:
    with app_engine(request).connect() as connection:
        for candidate in _id_candidates(request, signal_id):
            detail = signal_detail(connection, candidate)
            if detail is not None:
                return detail
    raise HTTPException(status_code=404, detail="signal not found")


def _id_candidates(request: Request, decoded: str) -> list[str]:
    """The ids ``GET /signals/{id}`` may mean, most likely first: the path segment as sent
    (``raw_path``) percent-decoded exactly once — the id a client that URL-encodes it
    meant — then as sent, for a client that pasted ``X%3Aa:b`` unencoded (a well-formed
    TradingView id never has a second unencoded ``:``, so the two readings cannot name
    two different signals), then the framework's decoding."""
    raw_path = request.scope.get("raw_path") or b""
    prefix = b"/signals/"
    raw = raw_path.split(b"?", 1)[0]
    candidates: list[str] = []
    if raw.startswith(prefix):
        sent = raw[len(prefix) :].decode("utf-8", errors="replace")
        candidates += [unquote(sent, errors="replace"), sent]
    candidates.append(decoded)
    unique = list(dict.fromkeys(candidates))
    return [c for c in unique if "\x00" not in c and 0 < len(c) <= 128]
