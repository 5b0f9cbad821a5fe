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
