"""``make demo`` end to end: sample candles → stored MTF signals → sample webhooks → one
sync → the health report (SPEC §15's end-to-end test), and its output fits on a screen."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import ai_signals_mtf, signal_events, signals, sync_audit_log
from demo.run import main as demo_main


def _alphapulse_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("ALPHAPULSE_")}


@pytest.mark.slow
def test_demo_runs_the_whole_desk_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ALPHAPULSE_REDIS_URL", raising=False)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # main() turns the root logger down
    environment = _alphapulse_env()
    url = f"sqlite:///{tmp_path / 'demo.db'}"

    assert demo_main(argparse.Namespace(url=url, verbose=False)) == 0

    out, err = capfd.readouterr()
    # the clock is passed explicitly (run tags, arguments), never through the environment
    assert _alphapulse_env() == environment
    # one screen: the summary and the health report on stdout; on stderr only the progress
    # bar (redrawn in place with \r), no Dagster event lines, no per-item log lines
    assert len(out.splitlines()) <= 30, out
    assert "Health Score:" in out and "Signal Coverage:" in out
    assert "no_signal_created:    2" in out  # the two confirmed trades with no creation event
    assert "webhooks replayed: 58 accepted, 3 duplicate" in out
    assert "candles stored: " in out
    assert "ASSET_MATERIALIZATION" not in err and "STEP_START" not in err
    assert len(err.split("\n")) <= 3, err[-2000:]

    engine = make_engine(url)
    with engine.connect() as connection:

        def count(table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
            query = sa.select(sa.func.count()).select_from(table).where(*where)
            return int(connection.execute(query).scalar_one())

        mtf = count(ai_signals_mtf)
        tradingview = count(signals, signals.c.source == "tradingview")
        alphapulse = count(signals, signals.c.source == "alphapulse")
        created = count(signal_events, signal_events.c.event_type == "SIGNAL_CREATED")
        audited = count(sync_audit_log)
    engine.dispose()
    # the sample stream has 13 TradingView signals; every stored MTF signal reached the
    # registry through its own SIGNAL_CREATED, exactly like a webhook
    assert tradingview == 13
    assert mtf >= 1 and alphapulse == mtf
    assert f"MTF signals stored: {mtf} " in out
    assert created >= mtf + 10
    assert audited > 0  # the sync filled fields, with an audit row each
