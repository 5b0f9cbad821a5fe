"""The "final trade" rule (``sync/final_trades.py``): its Python check and its SQL
predicate give the same answer on every case and every status, on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from alphapulse_dagster.db.tables import candles, signals
from alphapulse_dagster.sync.final_trades import FINAL_TRADE, is_final, not_final_sql
from alphapulse_dagster.sync.lifecycle import CANCELLED, CLOSED, CONFIRMED, PENDING
from alphapulse_dagster.sync.reconcile import needs_candles, tier1_signal_ids

CLOSE = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _mfe(tier: str, at: datetime | None) -> dict[str, Any]:
    held: dict[str, Any] = {"tier": tier, "confidence": 1.0 if tier == "1" else 0.8}
    if at is not None:
        held["at"] = at.isoformat()
    return {"mfe": held}


# case -> (closed_at, field_provenance, final by hand)
CASES: dict[str, tuple[datetime | None, dict[str, Any], bool]] = {
    "open, measured from candles": (None, _mfe("1", CLOSE + timedelta(hours=1)), False),
    "closed, nothing measured": (CLOSE, {}, False),
    "closed, other fields only": (CLOSE, {"entry_price": {"tier": "0", "confidence": 1.0}}, False),
    "closed, MFE_UPDATE after close": (CLOSE, _mfe("2", CLOSE + timedelta(hours=1)), False),
    "closed, candles before close": (CLOSE, _mfe("1", CLOSE - timedelta(minutes=1)), False),
    "closed, candles without a stamp": (CLOSE, _mfe("1", None), False),
    "closed, candles at the close": (CLOSE, _mfe("1", CLOSE), True),
    "closed, candles after close": (CLOSE, _mfe("1", CLOSE + timedelta(days=2)), True),
    "closed, candles after close (+02:00 stamp)": (
        CLOSE,
        {"mfe": {"tier": "1", "at": "2026-03-02T14:00:01+02:00"}},  # 12:00:01 UTC
        True,
    ),
    "closed, candles before close (+02:00 stamp)": (
        CLOSE,
        {"mfe": {"tier": "1", "at": "2026-03-02T13:59:59+02:00"}},  # 11:59:59 UTC
        False,
    ),
}
STATUSES = (PENDING, CONFIRMED, CLOSED, CANCELLED)


def _rows() -> list[dict[str, Any]]:
    rows = []
    for n, (case, (closed_at, provenance, _)) in enumerate(CASES.items()):
        for status in STATUSES:
            rows.append(
                {
                    "signal_id": f"{status}|{case}",
                    "source": "tradingview",
                    "symbol": "BTCUSDT" if n % 2 else "ETHUSDT",
                    "status": status,
                    "confirmed_at": None if status == PENDING else CLOSE - timedelta(days=1),
                    "closed_at": closed_at,
                    "field_provenance": provenance,
                    "first_event_id": n + 1,
                    "last_event_id": n + 1,
                    "updated_at": CLOSE,
                }
            )
    return rows


def _stored(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.begin() as conn:
        conn.execute(sa.insert(signals), _rows())
        return {r["signal_id"]: dict(r) for r in conn.execute(sa.select(signals)).mappings()}


def test_python_and_sql_agree_on_every_case_and_status(engine: sa.Engine) -> None:
    stored = _stored(engine)
    assert len(stored) == len(CASES) * len(STATUSES) == 40
    with engine.connect() as conn:
        not_final = set(conn.scalars(sa.select(signals.c.signal_id).where(not_final_sql())))
        by_part = [
            set(conn.scalars(sa.select(signals.c.signal_id).where(part.sql())))
            for part in FINAL_TRADE
        ]
    for signal_id, row in stored.items():
        case = signal_id.split("|", 1)[1]
        assert is_final(row) is CASES[case][2], signal_id  # the hand-checked answer
        assert (signal_id not in not_final) is is_final(row), signal_id
        for part, holding in zip(FINAL_TRADE, by_part, strict=True):
            assert (signal_id in holding) is part.holds(row), (part, signal_id)
    # 3 final cases x 4 statuses
    assert len(stored) - len(not_final) == 12


def test_tier1_scope_is_needs_candles_on_symbols_with_candles(engine: sa.Engine) -> None:
    stored = _stored(engine)
    with engine.begin() as conn:
        bar = {"timeframe": "1h", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
        conn.execute(sa.insert(candles), [{"symbol": "BTCUSDT", "open_time": CLOSE, **bar}])
        scope = set(tier1_signal_ids(conn))
    expected = {i for i, r in stored.items() if r["symbol"] == "BTCUSDT" and needs_candles(r)}
    assert scope == expected
    # confirmed (not PENDING), on BTCUSDT (the odd cases), not final
    final_cases = {case for case, (_, _, final) in CASES.items() if final}
    odd = [case for n, case in enumerate(CASES) if n % 2]
    assert expected == {
        f"{status}|{case}"
        for case in odd
        if case not in final_cases
        for status in (CONFIRMED, CLOSED, CANCELLED)
    }
