"""Candles: resampling against hand-computed bars, idempotent upsert, the contract,
missing-bar counting, and the candles asset materialised on SQLite and Postgres."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import candles as candles_table
from alphapulse_dagster.market.bar_series import to_ns
from alphapulse_dagster.market.candle_store import (
    load_bar_series_of,
    load_candles,
    upsert_candles,
)
from alphapulse_dagster.market.market_data import CsvMarketData, missing_bars, read_candle_csv
from alphapulse_dagster.market.resample import resample_ohlcv
from assets.market_data import CANDLE_INTEGRITY, candles
from assets.run_clock import NOW_TAG
from resources import ConfigResource, DatabaseResource
from resources.market_data import MarketDataResource

CONFIG_DIR = Path(__file__).parents[1] / "config"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def btc(sample_dir: Path) -> pd.DataFrame:
    return read_candle_csv(sample_dir / "BTCUSD_1h.csv", "BTCUSD")


@pytest.fixture(scope="module")
def eur(sample_dir: Path) -> pd.DataFrame:
    return read_candle_csv(sample_dir / "EURUSD_1h.csv", "EURUSD")


def bar(frame: pd.DataFrame, open_time: str) -> dict:
    row = frame[frame["open_time"] == utc(open_time)]
    assert len(row) == 1, f"no bar at {open_time}"
    return row.iloc[0].to_dict()


def test_resample_btc_4h_by_hand(btc: pd.DataFrame) -> None:
    # 12:00..15:00 of 2017-07-01 from the CSV rows 2..5
    got = bar(resample_ohlcv(btc, "4h"), "2017-07-01 12:00")
    assert got["open"] == 2509.17
    assert got["high"] == 2512.87
    assert got["low"] == 2450.0
    assert got["close"] == 2467.83
    assert got["volume"] == pytest.approx(157.36 + 280.28 + 289.42 + 276.82)
    assert got["n_bars"] == 4
    # the first 4h bucket (08:00) holds only the 11:00 bar: incomplete, still reported
    first = bar(resample_ohlcv(btc, "4h"), "2017-07-01 08:00")
    assert first["n_bars"] == 1 and first["open"] == 2505.56 and first["close"] == 2509.17


def test_resample_eurusd_weekend_gap_by_hand(eur: pd.DataFrame) -> None:
    four_hour = resample_ohlcv(eur, "4h")
    friday_close = bar(four_hour, "2017-01-06 20:00")  # 20:00 and 21:00, then the weekend
    assert (friday_close["open"], friday_close["high"]) == (1.05316, 1.05356)
    assert (friday_close["low"], friday_close["close"]) == (1.05278, 1.05346)
    assert friday_close["n_bars"] == 2
    # no bars are invented for Saturday: the next 4h bar after Friday 20:00 is Sunday 20:00
    after = four_hour[four_hour["open_time"] > utc("2017-01-06 20:00")].iloc[0]
    assert after["open_time"] == utc("2017-01-08 20:00")
    daily = resample_ohlcv(eur, "1d")
    sunday = bar(daily, "2017-01-08")  # only 22:00 and 23:00 trade on Sunday
    assert (sunday["open"], sunday["high"], sunday["low"], sunday["close"]) == (
        1.05308,
        1.05365,
        1.05262,
        1.05298,
    )
    assert sunday["volume"] == pytest.approx(938700012.2 + 4022139893.0)
    assert bar(daily, "2017-01-06")["n_bars"] == 22
    assert utc("2017-01-07") not in set(daily["open_time"])


def test_missing_bars_counts_the_weekend_and_never_fills(eur: pd.DataFrame) -> None:
    week = eur[(eur["open_time"] >= utc("2017-01-06")) & (eur["open_time"] < utc("2017-01-09"))]
    # Friday 22:00 .. Sunday 21:00 = 48 absent hours
    assert missing_bars(week, "1h", utc("2017-01-06"), utc("2017-01-09")) == 48
    assert len(week) == 22 + 2 + 0  # Friday 00-21h, Sunday 22-23h; nothing forward-filled


def test_csv_source_derives_only_closed_coarse_bars(sample_dir: Path) -> None:
    source = CsvMarketData(sample_dir)
    daily = source.fetch_ohlcv(
        "BTCUSD", "1d", datetime(2017, 7, 1, tzinfo=UTC), datetime(2017, 7, 4, tzinfo=UTC)
    )
    assert list(daily["open_time"]) == [utc("2017-07-01"), utc("2017-07-02"), utc("2017-07-03")]
    last = source.fetch_ohlcv(
        "BTCUSD", "1d", datetime(2019, 7, 3, tzinfo=UTC), datetime(2019, 7, 6, tzinfo=UTC)
    )
    # the data ends 2019-07-04 01:00 (open): the 07-04 daily bar never closed
    assert list(last["open_time"]) == [utc("2019-07-03")]


def test_upsert_is_idempotent(engine: sa.Engine, btc: pd.DataFrame) -> None:
    window = btc.iloc[:300]
    with engine.begin() as connection:
        assert upsert_candles(connection, window, "1h") == 300
    with engine.begin() as connection:
        assert upsert_candles(connection, window, "1h") == 300
        changed = window.copy()
        changed.loc[changed.index[0], "close"] = 2500.0  # a corrected print replaces the row
        upsert_candles(connection, changed.iloc[:1], "1h")
    with engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(candles_table))
        assert count.scalar_one() == 300
        stored = load_candles(
            connection,
            ["BTCUSD"],
            "1h",
            datetime(2017, 7, 1, tzinfo=UTC),
            datetime(2018, 1, 1, tzinfo=UTC),
        )
    assert stored.iloc[0]["close"] == 2500.0
    pd.testing.assert_frame_equal(
        stored.iloc[1:].reset_index(drop=True), window.iloc[1:].reset_index(drop=True)
    )


def test_bar_series_of_many_symbols_read_in_time_order(
    engine: sa.Engine, btc: pd.DataFrame, eur: pd.DataFrame
) -> None:
    """``load_bar_series_of`` (on Postgres one row of arrays per symbol, on SQLite rows)
    gives each symbol's bars of the window in time order, whatever order they were stored
    in, the bars of the finer timeframe when stored, and an empty series for a symbol
    without bars."""
    btc_part, eur_part = btc.iloc[:200], eur.iloc[:150]
    with engine.begin() as connection:  # stored newest first, the 1h of BTC also as 4h
        upsert_candles(connection, btc_part.iloc[::-1], "1h")
        upsert_candles(connection, eur_part.iloc[::-1], "1h")
        upsert_candles(connection, resample_ohlcv(btc_part, "4h"), "4h")
    start, end = btc_part["open_time"].iloc[10], btc_part["open_time"].iloc[190]
    with engine.connect() as connection:
        series = load_bar_series_of(connection, ["EURUSD", "BTCUSD", "NOBARS"], "4h", start, end)
        hourly = load_bar_series_of(connection, ["EURUSD", "BTCUSD"], "1h", start, end)
    four_hour, finer = series["BTCUSD"]
    expected = resample_ohlcv(btc_part, "4h")
    expected = expected[(expected["open_time"] >= start) & (expected["open_time"] < end)]
    assert len(four_hour) == len(expected) == 45  # 04:00 of the 11th bar .. the 190th
    assert np.array_equal(four_hour.high, expected["high"].to_numpy())
    assert four_hour.bar_ns == 4 * 3600 * 10**9
    in_window = btc_part[(btc_part["open_time"] >= start) & (btc_part["open_time"] < end)]
    assert finer is not None and len(finer) == len(in_window) == 180
    assert np.array_equal(finer.open_ns, to_ns(in_window["open_time"]))
    for field in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(finer, field), in_window[field].to_numpy())
    eur_bars, eur_finer = hourly["EURUSD"]
    eur_window = eur_part[(eur_part["open_time"] >= start) & (eur_part["open_time"] < end)]
    assert eur_finer is None and len(eur_bars) == len(eur_window)
    assert np.array_equal(eur_bars.close, eur_window["close"].to_numpy())
    assert np.all(np.diff(eur_bars.open_ns) > 0)
    empty, none = series["NOBARS"]
    assert len(empty) == 0 and none is None and empty.open_ns.dtype == np.int64


def _resources(url: str, csv_dir: Path | str = "") -> dict:
    return {
        "database": DatabaseResource(url=url),
        "app_config": ConfigResource(config_dir=str(CONFIG_DIR)),
        "market_data": MarketDataResource(csv_dir=str(csv_dir)),
    }


def _count(url: str, timeframe: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        query = (
            sa.select(sa.func.count())
            .select_from(candles_table)
            .where(candles_table.c.timeframe == timeframe)
        )
        value = connection.execute(query).scalar_one()
    engine.dispose()
    return int(value)


def test_materialize_candles_partition(db_url: str) -> None:
    # Monday 2017-07-03: both symbols trade all day, 24 hourly, 6 four-hour and 1 daily bar
    result = dg.materialize([candles], partition_key="2017-07-03", resources=_resources(db_url))
    assert result.success
    metadata = result.asset_materializations_for_node("candles")[0].metadata
    assert metadata["rows_1h"].value == 48 and metadata["rows_4h"].value == 12
    assert metadata["rows_1d"].value == 2
    assert metadata["missing_bars"].value == 0
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CANDLE_INTEGRITY and check.passed
    again = dg.materialize([candles], partition_key="2017-07-03", resources=_resources(db_url))
    assert again.success
    assert (_count(db_url, "1h"), _count(db_url, "4h"), _count(db_url, "1d")) == (48, 12, 2)


def test_contract_rejects_corrupted_frame_and_stores_nothing(
    sqlite_url: str, sample_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(sample_dir / "EURUSD_1h.csv", folder / "EURUSD_1h.csv")
    lines = (sample_dir / "BTCUSD_1h.csv").read_text().splitlines()
    # row 2017-07-01T12:00: high 2412.87 < close 2488.43; then a duplicate 13:00 bar
    lines[2] = "2017-07-01T12:00:00Z,2509.17,2412.87,2484.99,2488.43,157.36"
    lines.insert(4, lines[3])
    (folder / "BTCUSD_1h.csv").write_text("\n".join(lines) + "\n")
    result = dg.materialize(
        [candles],
        partition_key="2017-07-01",
        resources=_resources(sqlite_url, folder),
        raise_on_error=False,
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    failures = check.metadata["failures_by_check"].value
    assert failures == {
        "high >= max(open, close)": 1,
        "open_time unique and strictly increasing per symbol": 1,
    }
    cases = check.metadata["failure_cases"].value
    assert "2412.87" in cases and "2017-07-01 13:00:00+00:00" in cases
    assert _count(sqlite_url, "1h") == 0


def test_exchange_per_symbol_database_source(
    sqlite_url: str, btc: pd.DataFrame, tmp_path: Path
) -> None:
    """``exchange: database`` in symbol_config reads the candles table itself: 1h bars
    stored earlier give the derived 4h and 1d bars of the partition (the first 100 bars
    run 2017-07-01 11:00 to 07-05 14:00, so 07-03 is a whole day)."""
    (tmp_path / "symbol_config.yaml").write_text(
        "symbols:\n  - {symbol: BTCUSD, exchange: database, signal_timeframe: 4h}\n"
    )
    engine = make_engine(sqlite_url)
    with engine.begin() as connection:
        upsert_candles(connection, btc.iloc[:100], "1h")
    engine.dispose()
    resources = _resources(sqlite_url, "/nonexistent")  # the CSV folder is never read
    resources["app_config"] = ConfigResource(config_dir=str(tmp_path))
    result = dg.materialize([candles], partition_key="2017-07-03", resources=resources)
    metadata = result.asset_materializations_for_node("candles")[0].metadata
    assert (metadata["rows_4h"].value, metadata["rows_1d"].value) == (6, 1)
    assert _count(sqlite_url, "1d") == 1


def test_exchange_source_without_ccxt_says_how_to_install() -> None:
    import importlib.util

    from alphapulse_dagster.market.market_data import MarketDataError

    if importlib.util.find_spec("ccxt") is not None:
        pytest.skip("ccxt is installed here; the message is for installs without the extra")
    with pytest.raises(MarketDataError, match=r"pip install 'alphapulse-dagster\[exchange\]'"):
        MarketDataResource().source_for("binance", make_engine("sqlite://"))


def test_backfill_reports_each_day_its_own_numbers(sqlite_url: str) -> None:
    # one run over two days; Sunday 2017-07-02 has 24 BTCUSD bars and EURUSD's 21:00-23:00
    # (forex reopens Sunday evening), so 27 hourly, 6 + 1 four-hour and 2 daily bars
    result = dg.materialize(
        [candles],
        resources=_resources(sqlite_url),
        tags={
            "dagster/asset_partition_range_start": "2017-07-02",
            "dagster/asset_partition_range_end": "2017-07-03",
        },
    )
    assert result.success
    by_day = {m.partition: m.metadata for m in result.asset_materializations_for_node("candles")}
    assert sorted(by_day) == ["2017-07-02", "2017-07-03"]
    figures = {
        day: tuple(meta[k].value for k in ("rows_1h", "rows_4h", "rows_1d", "missing_bars"))
        for day, meta in by_day.items()
    }
    assert figures == {"2017-07-02": (27, 7, 2, 0), "2017-07-03": (48, 12, 2, 0)}


def test_live_run_stores_only_closed_bars_and_a_dead_feed_records_nothing(
    sqlite_url: str,
) -> None:
    # at 10:01 on 2019-05-12 (BTCUSD only in 2019): 1h bars opened 00:00..09:00 have closed,
    # 4h bars 00:00 and 04:00 have closed, the 08:00 4h bar and the daily bar have not
    result = dg.materialize(
        [candles],
        partition_key="2019-05-12",
        resources=_resources(sqlite_url),
        tags={NOW_TAG: "2019-05-12T10:01:00+00:00"},
    )
    (materialization,) = result.asset_materializations_for_node("candles")
    metadata = materialization.metadata
    assert (metadata["rows_1h"].value, metadata["rows_4h"].value) == (10, 2)
    assert "rows_1d" not in metadata or metadata["rows_1d"].value == 0
    assert (_count(sqlite_url, "1h"), _count(sqlite_url, "4h"), _count(sqlite_url, "1d")) == (
        10,
        2,
        0,
    )
    # the sample ends 2019-07-04: on 2019-07-10 no bar closed in the last hour, so the
    # run records no materialisation and the freshness policy will show candles stale
    dead = dg.materialize(
        [candles],
        partition_key="2019-07-10",
        resources=_resources(sqlite_url),
        tags={NOW_TAG: "2019-07-10T10:01:00+00:00"},
    )
    assert dead.success
    assert dead.asset_materializations_for_node("candles") == []
