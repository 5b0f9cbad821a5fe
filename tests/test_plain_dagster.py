"""Plain Dagster with nothing exported (SPEC §2): an unset ``ALPHAPULSE_*`` means its
embedded default, so ``dagster asset materialize`` runs without any variable set — on a
fresh checkout, where the embedded database does not exist yet (it is created and migrated
on first use).

The subprocesses run in a scratch working directory, so the embedded default database
(``.alphapulse/alphapulse.db`` under the working directory) is a scratch file too.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import candles as candles_table
from alphapulse_dagster.paths import sample_market_data_dir
from assets.market_data import candles

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _clean_env(dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPULSE_")}
    env["DAGSTER_HOME"] = str(dagster_home)
    # the checkout's packages (an editable install points there too)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _csv_bars(path: Path, start: datetime, end: datetime) -> int:
    with open(path, newline="") as handle:
        times = (datetime.fromisoformat(row["open_time"]) for row in csv.DictReader(handle))
        return sum(1 for t in times if start <= t < end)


@pytest.mark.slow
def test_materialize_candles_with_nothing_exported(tmp_path: Path) -> None:
    workdir, home = tmp_path / "work", tmp_path / "dagster_home"
    workdir.mkdir()
    home.mkdir()
    env = _clean_env(home)
    assert not any(key.startswith("ALPHAPULSE_") for key in env)

    partitions = candles.partitions_def
    assert partitions is not None
    key = partitions.get_partition_key(datetime.fromisoformat("2019-06-14T00:00:00+00:00"))
    result = subprocess.run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "alphapulse_dagster.definitions",
            "--select",
            "candles",
            "--partition",
            key,
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "is not set" not in output

    # the embedded default database under the working directory was created and migrated,
    # and holds the partition's bars
    window = partitions.time_window_for_partition_key(key)  # type: ignore[attr-defined]
    expected = _csv_bars(sample_market_data_dir() / "BTCUSD_1h.csv", window.start, window.end)
    assert expected >= 1
    engine = make_engine(f"sqlite:///{workdir / '.alphapulse' / 'alphapulse.db'}")
    try:
        with engine.connect() as connection:
            stored = connection.execute(
                sa.select(sa.func.count())
                .select_from(candles_table)
                .where(candles_table.c.symbol == "BTCUSD", candles_table.c.timeframe == "1h")
            ).scalar_one()
    finally:
        engine.dispose()
    assert stored == expected
