"""``alphapulse import-candles`` on the bundled sample (both symbols) and on bad input."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from alphapulse_dagster.cli import main
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import candles


def counts(url: str) -> dict[tuple[str, str], int]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(candles.c.symbol, candles.c.timeframe, sa.func.count()).group_by(
                candles.c.symbol, candles.c.timeframe
            )
        ).all()
    engine.dispose()
    return {(s, tf): n for s, tf, n in rows}


def test_import_sample_twice_is_idempotent(sqlite_url: str, sample_dir: Path, capsys) -> None:
    assert main(["import-candles", str(sample_dir), "--url", sqlite_url, "--quiet"]) == 0
    first = counts(sqlite_url)
    assert main(["import-candles", str(sample_dir), "--url", sqlite_url, "--quiet"]) == 0
    assert counts(sqlite_url) == first
    # hourly rows as in the files; 4h and 1d derived, the unfinished last bars left out
    assert first[("BTCUSD", "1h")] == 17583 and first[("EURUSD", "1h")] == 6225
    assert first[("BTCUSD", "1d")] == 733 and first[("EURUSD", "4h")] == 1608
    assert "imported" in capsys.readouterr().out


def test_import_rejects_badly_named_file(sqlite_url: str, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "btc.csv"
    bad.write_text("open_time,open,high,low,close,volume\n")
    assert main(["import-candles", str(bad), "--url", sqlite_url]) == 2
    assert "{SYMBOL}_{timeframe}.csv" in capsys.readouterr().err


def test_import_marks_the_filled_days_in_the_dagster_catalogue(
    sqlite_url: str, sample_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import dagster as dg

    # BTCUSD from its first bar (2017-07-01 11:00) to 2017-07-03 23:00: 61 hourly bars
    lines = (sample_dir / "BTCUSD_1h.csv").read_text().splitlines()
    (tmp_path / "BTCUSD_1h.csv").write_text("\n".join(lines[:62]) + "\n")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    command = ["import-candles", str(tmp_path / "BTCUSD_1h.csv"), "--url", sqlite_url, "--quiet"]
    assert main(command) == 0
    assert "marked 3 daily candles partitions filled" in capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        filled = instance.get_materialized_partitions(dg.AssetKey("candles"))
        rows = {
            day: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("candles"), asset_partitions=[day]),
                limit=1,
            )
            .records[0]
            .asset_materialization.metadata["rows_written"]
            .value
            for day in filled
        }
    # 07-01: 13 hourly bars (11:00..23:00), 4 four-hour bars (08:00 from its 11:00 hour,
    # 12:00, 16:00, 20:00), 1 daily; 07-02 and 07-03: 24 + 6 + 1 each
    assert rows == {"2017-07-01": 18, "2017-07-02": 31, "2017-07-03": 31}
    # a re-import marks nothing again
    assert main(command) == 0
    assert "marked 0 daily candles partitions filled" in capsys.readouterr().out
