"""Alembic migrations on SQLite and the real Postgres; the active-signal unique index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import current_revision, upgrade
from alphapulse_dagster.db.tables import ai_signals_mtf, metadata

T0 = datetime(2019, 6, 3, 4, tzinfo=UTC)


def _signal(status: str, timestamp: datetime = T0, direction: str = "LONG") -> dict:
    return {
        "signal_id": str(uuid.uuid4()),
        "symbol": "BTCUSD",
        "direction": direction,
        "signal_timeframe": "4h",
        "entry_timeframe": "1h",
        "timestamp": timestamp,
        "signal_confidence": 0.7,
        "model_heads_analysis": {},
        "market_price": 100.0,
        "entry_price": 99.0,
        "stop_loss": 97.0,
        "take_profits": [103.0],
        "targets_r": [2.0],
        "risk_reward_ratio": 2.0,
        "entry_strategy": "MARKET_ENTRY",
        "entry_pattern": "NO_KEY_LEVEL",
        "entry_confidence": 0.5,
        "atr": 1.0,
        "entry_improvement_bps": 0.0,
        "htf_alignment": {},
        "status": status,
        "expires_at": timestamp,
        "created_at": timestamp,
    }


# the chain is linear: 0005 -> 0009 -> 0007 -> 0010 -> 0006 -> 0011 (in landing order)
HEAD_REVISION = "0011"


def _check_schema(url: str) -> None:
    upgrade(url)
    assert current_revision(url) == HEAD_REVISION
    engine = make_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        # upgrading twice is a no-op
        upgrade(url)
        assert current_revision(url) == HEAD_REVISION
    finally:
        engine.dispose()


def test_upgrade_on_sqlite(tmp_path) -> None:
    _check_schema(f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.postgres
def test_upgrade_on_postgres(empty_pg_url: str) -> None:
    _check_schema(empty_pg_url)
    engine = make_engine(empty_pg_url)
    try:
        with engine.connect() as conn:
            lz4 = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
                "AND 'lz4' = ANY(enumvals)"
            ).scalar()
            compression = conn.exec_driver_sql(
                "SELECT attcompression FROM pg_attribute WHERE attrelid = 'signals'::regclass "
                "AND attname = 'field_provenance'"
            ).scalar()
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("signals")}
    finally:
        engine.dispose()
    # 0004: provenance in lz4 where the server has it; the two unused indexes are gone
    assert compression == ("l" if lz4 else "")
    assert not indexes & {"ix_signals_last_event_id", "ix_signals_signal_time"}
    assert {"ix_signals_status_keyset", "ix_signals_keyset", "ix_signals_moment"} <= indexes
    assert "ix_signals_status" not in indexes  # 0010: the keyset index leads with status


def test_active_signal_unique_index(engine: sa.Engine) -> None:
    """Never two active signals for one symbol+direction — the database says no."""
    with engine.begin() as connection:
        connection.execute(ai_signals_mtf.insert(), [_signal("PENDING")])
    later = T0.replace(hour=8)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(ai_signals_mtf.insert(), [_signal("CONFIRMED", later)])
    with engine.begin() as connection:  # inactive ones and the other direction are fine
        connection.execute(
            ai_signals_mtf.insert(),
            [
                _signal("CLOSED", later),
                _signal("CANCELLED", T0.replace(hour=12)),
                _signal("PENDING", later, direction="SHORT"),
            ],
        )
        count = connection.execute(sa.select(sa.func.count()).select_from(ai_signals_mtf))
        assert count.scalar_one() == 4


def test_times_round_trip_as_utc(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(ai_signals_mtf.insert(), [_signal("PENDING")])
        stored = connection.execute(sa.select(ai_signals_mtf.c.timestamp)).scalar_one()
    assert stored == T0
    assert stored.utcoffset() is not None and stored.utcoffset().total_seconds() == 0
