"""Migration 0006: TradingView signal ids become injective (SPEC §16), on SQLite and the
real Postgres, with rows that change, a collision and a rename chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from alphapulse_dagster.db.tables import (
    signal_events,
    signal_gaps,
    signal_outcomes,
    signals,
    sync_audit_log,
    sync_cursors,
)
from alphapulse_dagster.sync.projection import project_log
from tests.test_health_buckets import _scratch, _stored

T0 = datetime(2019, 6, 14, 12, tzinfo=UTC)
UUID = "6f1c1a52-6d2e-4a57-9d4b-0d3c2f9d1e11"

# (symbol, trade_id) of each event, in event_id order (1..7); the old id was symbol:trade_id
EVENTS: list[tuple[str, str | None, str, str]] = [
    # symbol, trade_id, event_type, source
    ("BINANCE:BTCUSDT", "t1", "SIGNAL_CREATED", "tradingview"),  # 1 changes alone
    ("Y", "a:b", "SIGNAL_CREATED", "tradingview"),  # 2 collides with 3 under Y:a:b
    ("Y:a", "b", "ENTRY", "tradingview"),  # 3
    ("X:a", "b", "SIGNAL_CREATED", "tradingview"),  # 4 X:a:b -> X%3Aa:b ...
    ("X%3Aa", "b", "SIGNAL_CREATED", "tradingview"),  # 5 ... the old id of this one
    ("NQ1!", "t2", "SIGNAL_CREATED", "tradingview"),  # 6 unchanged
    ("BINANCE:BTCUSDT", "t1", "CANCELLED", "alphapulse"),  # 7 the sync's inferred expiry
]


def _event(n: int, symbol: str, trade_id: str | None, kind: str, source: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"direction": "LONG", "timeframe": "1h"}
    if source == "alphapulse":
        payload = {"reason": "EXPIRED", "inferred": True}
    return {
        "event_id": n,
        "source": source,
        "event_type": kind,
        "signal_id": f"{symbol}:{trade_id}",
        "trade_id": trade_id,
        "symbol": symbol,
        "event_time": T0 + timedelta(hours=n),
        "received_at": T0,
        "payload": payload,
        "idempotency_key": f"k{n}",
    }


def _registry(signal_id: str, symbol: str, trade_id: str, first: int, last: int) -> dict:
    return {
        "signal_id": signal_id,
        "source": "tradingview",
        "symbol": symbol,
        "trade_id": trade_id,
        "status": "PENDING",
        "signal_time": T0 + timedelta(hours=first),
        "health_score": 90.0,
        "field_provenance": {},
        "first_event_id": first,
        "last_event_id": last,
        "updated_at": T0,
    }


def _seed(engine: sa.Engine) -> None:
    events = [_event(n, *spec) for n, spec in enumerate(EVENTS, start=1)]
    events.append(  # an AlphaPulse signal, keyed by its UUID: untouched
        {**_event(8, "BTCUSD", None, "SIGNAL_CREATED", "alphapulse"), "signal_id": UUID}
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(signal_events), events)
        conn.execute(
            sa.insert(signals),
            [
                _registry("BINANCE:BTCUSDT:t1", "BINANCE:BTCUSDT", "t1", 1, 7),
                _registry("Y:a:b", "Y", "a:b", 2, 3),  # one row folded from two signals
                _registry("X:a:b", "X:a", "b", 4, 4),
                _registry("X%3Aa:b", "X%3Aa", "b", 5, 5),
                _registry("NQ1!:t2", "NQ1!", "t2", 6, 6),
            ],
        )
        conn.execute(
            sa.insert(signal_gaps),
            [
                {
                    "signal_id": signal_id,
                    "gap_type": "no_targets",
                    "kind": "actionable",
                    "weight": 10.0,
                    "fillable": True,
                    "detected_at": T0,
                }
                for signal_id in ("BINANCE:BTCUSDT:t1", "Y:a:b", "X:a:b", "X%3Aa:b", "NQ1!:t2")
            ],
        )
        conn.execute(
            sa.insert(sync_audit_log),
            [
                {
                    "sync_run_id": "r1",
                    "signal_id": signal_id,
                    "field": "mfe",
                    "new_value": 1.0,
                    "tier": "1",
                    "confidence": 1.0,
                    "reason": "candles",
                    "action_timestamp": T0,
                }
                for signal_id in ("BINANCE:BTCUSDT:t1", "Y:a:b", "X:a:b", "X%3Aa:b")
            ],
        )
        conn.execute(
            sa.insert(signal_outcomes),
            [
                {
                    "signal_id": signal_id,
                    "entry_mode": "actual",
                    "source": "tradingview",
                    "symbol": "S",
                    "direction": "LONG",
                    "timeframe": "1h",
                    "signal_time": T0,
                    "status": "OPEN",
                    "ambiguous": False,
                    "evaluated_at": T0,
                }
                for signal_id in ("BINANCE:BTCUSDT:t1", "Y:a:b", "NQ1!:t2")
            ],
        )
        conn.execute(
            sa.insert(sync_cursors),
            [
                {"name": name, "last_event_id": last, "updated_at": T0}
                for name, last in (
                    ("lifecycle", 8),
                    ("reconcile", 8),
                    ("gaps", 1),
                    ("gaps_audit", 4),
                )
            ],
        )


def _column(engine: sa.Engine, table: sa.Table, order: Any) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table.c.signal_id).order_by(order)).scalars())


@pytest.fixture(params=["sqlite", "postgres"])
def url_before_0006(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = str(request.getfixturevalue("empty_pg_url"))
    upgrade(url, "0010")  # the revision below 0006
    return url


def test_0006_rewrites_every_id_that_changes(url_before_0006: str) -> None:
    engine = make_engine(url_before_0006)
    try:
        _seed(engine)
        upgrade(url_before_0006, "0006")

        assert _column(engine, signal_events, signal_events.c.event_id) == [
            "BINANCE%3ABTCUSDT:t1",
            "Y:a%3Ab",
            "Y%3Aa:b",
            "X%3Aa:b",
            "X%253Aa:b",
            "NQ1!:t2",
            "BINANCE%3ABTCUSDT:t1",
            UUID,
        ]
        # renamed rows keep their content; the collided row (two signals in one) is gone
        assert _column(engine, signals, signals.c.first_event_id) == [
            "BINANCE%3ABTCUSDT:t1",
            "X%3Aa:b",
            "X%253Aa:b",
            "NQ1!:t2",
        ]
        with engine.connect() as conn:
            row = (
                conn.execute(sa.select(signals).where(signals.c.signal_id == "X%3Aa:b"))
                .mappings()
                .one()
            )
            assert (row["symbol"], row["first_event_id"]) == ("X:a", 4)
            cursors = {
                name: last
                for name, last in conn.execute(
                    sa.select(sync_cursors.c.name, sync_cursors.c.last_event_id)
                )
            }
            # the sync folds, reconciles and gap-checks the collided signals again
            assert cursors == {"lifecycle": 1, "reconcile": 1, "gaps": 1, "gaps_audit": 4}
            assert _stored(conn) == _scratch(conn)  # health buckets still exact
        assert sorted(_column(engine, signal_gaps, signal_gaps.c.gap_id)) == sorted(
            ["BINANCE%3ABTCUSDT:t1", "X%3Aa:b", "X%253Aa:b", "NQ1!:t2"]
        )
        assert sorted(_column(engine, signal_outcomes, signal_outcomes.c.signal_id)) == [
            "BINANCE%3ABTCUSDT:t1",
            "NQ1!:t2",
        ]
        # the collided row's audit trail follows the pair the row was named after (Y, a:b)
        assert _column(engine, sync_audit_log, sync_audit_log.c.audit_id) == [
            "BINANCE%3ABTCUSDT:t1",
            "Y:a%3Ab",
            "X%3Aa:b",
            "X%253Aa:b",
        ]

        # the next projection splits the collided signal into its two own rows
        with engine.begin() as conn:
            project_log(conn, T0 + timedelta(days=1))
            by_id = {
                r.signal_id: r
                for r in conn.execute(sa.select(signals.c.signal_id, signals.c.status))
            }
            assert by_id["Y:a%3Ab"].status == "PENDING"
            assert by_id["Y%3Aa:b"].status == "CONFIRMED"
            assert _stored(conn) == _scratch(conn)
    finally:
        engine.dispose()
