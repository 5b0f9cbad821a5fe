"""Column-wise reads and writes (db/columns.py) round-trip every kind of value the
outcome tables hold, NULLs included, on SQLite and on the real Postgres (COPY paths)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from alphapulse_dagster.analytics.outcomes import OUTCOME_COLUMNS
from alphapulse_dagster.db.columns import insert_frame, read_frame
from alphapulse_dagster.db.tables import signal_outcomes

T = pd.Timestamp("2024-03-01 04:00", tz="UTC")


def _rows() -> pd.DataFrame:
    base = {c: None for c in OUTCOME_COLUMNS}
    closed = {
        **base, "signal_id": "a:1,\"quoted\"", "entry_mode": "actual", "source": "alphapulse",
        "symbol": "BTCUSD", "direction": "LONG", "timeframe": "1h", "signal_time": T,
        "entry_strategy": "", "consensus_size": 2, "heads": {"trend": "AGREE", "x": [1, 2]},
        "status": "CLOSED", "entry_price": 100.5, "stop_loss": 95.0, "filled_at": T,
        "exit_at": T + pd.Timedelta(hours=3), "exit_price": 110.0, "exit_reason": "TARGET",
        "r_multiple": 9.5 / 5.5, "mfe_r": 2.0, "mae_r": 0.0, "bars_to_mfe": 3, "bars_held": 3,
        "ambiguous": False, "first_target_hit": True, "evaluated_at": T + pd.Timedelta(days=1),
    }  # fmt: skip
    unfilled = {
        **base, "signal_id": "b", "entry_mode": "market", "source": "tradingview",
        "symbol": "ETHUSD", "direction": "SHORT", "timeframe": "4h", "signal_time": T,
        "status": "NOT_FILLED", "entry_price": float("nan"), "filled_at": pd.NaT,
        "bars_to_mfe": 0, "bars_held": 0, "ambiguous": True, "first_target_hit": False,
        "evaluated_at": T,
    }  # fmt: skip
    return pd.DataFrame([closed, unfilled])[OUTCOME_COLUMNS]


def test_insert_frame_then_read_frame_round_trip(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        assert insert_frame(connection, signal_outcomes, _rows()) == 2
    o = signal_outcomes.c
    query = sa.select(*(o[c] for c in OUTCOME_COLUMNS)).order_by(o.signal_id)
    with engine.connect() as connection:
        back = read_frame(connection, query)
    a, b = back.iloc[0], back.iloc[1]
    assert a.signal_id == 'a:1,"quoted"' and a.entry_strategy == ""  # empty is not NULL
    assert b.entry_strategy is None and b.reported_exit_reason is None
    assert a.heads == {"trend": "AGREE", "x": [1, 2]} and b.heads is None
    assert a.signal_time == T and a.exit_at == T + pd.Timedelta(hours=3)
    assert pd.isna(b.filled_at) and str(back["filled_at"].dtype).startswith("datetime64")
    assert a.r_multiple == 9.5 / 5.5 and math.isnan(b.entry_price)  # floats exactly
    assert back["r_multiple"].dtype == np.float64
    assert (a.consensus_size, a.bars_held, b.bars_held) == (2, 3, 0)
    assert back["ambiguous"].tolist() == [False, True]
    assert back["first_target_hit"].tolist() == [True, False]
    with engine.connect() as connection:
        empty = read_frame(connection, query.where(o.signal_id == "none"))
    assert list(empty.columns) == OUTCOME_COLUMNS and empty.empty


def test_read_arrays_decodes_each_kind_of_array(pg_url: str) -> None:
    """``read_arrays`` (Postgres): ``array_send`` of floats, integers and times comes back
    as NumPy arrays (times as epoch nanoseconds), an empty array as an empty one, other
    columns as they are; an array with a NULL is refused by name."""
    from alphapulse_dagster.db.columns import read_arrays
    from alphapulse_dagster.db.engine import make_engine

    engine = make_engine(pg_url)
    t = T.to_pydatetime()
    query = sa.select(
        sa.literal("BTCUSD"),
        sa.func.array_send(sa.cast([1.5, -2.25, 1e300], sa.ARRAY(sa.Float))),
        sa.func.array_send(sa.cast([7, -(2**40)], sa.ARRAY(sa.BigInteger))),
        sa.func.array_send(sa.cast([3], sa.ARRAY(sa.Integer))),
        sa.func.array_send(sa.cast([t, t + pd.Timedelta(hours=1)], sa.ARRAY(sa.DateTime(True)))),
        sa.func.array_send(sa.cast([], sa.ARRAY(sa.Float))),
    )
    with engine.connect() as connection:
        ((name, floats, bigs, ints, times, empty),) = read_arrays(connection, query)
        with_null = sa.select(sa.func.array_send(sa.cast([1.0, None], sa.ARRAY(sa.Float))))
        with pytest.raises(ValueError, match="NULLs"):
            read_arrays(connection, with_null)
    engine.dispose()
    assert name == "BTCUSD"
    assert floats.dtype == np.float64 and floats.tolist() == [1.5, -2.25, 1e300]
    assert bigs.dtype == np.int64 and bigs.tolist() == [7, -(2**40)]
    assert ints.tolist() == [3]
    assert times.tolist() == [T.value, T.value + 3600 * 10**9]  # 2024-03-01 04:00 UTC in ns
    assert len(empty) == 0
