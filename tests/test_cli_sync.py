"""``alphapulse sync`` and ``alphapulse health`` from the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from hybrid_sync_support import append, created, entry

from alphapulse_dagster.cli import main
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.sync.sync_cycle import sync_lock

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "config")


@pytest.fixture
def env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ALPHAPULSE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ALPHAPULSE_CONFIG_DIR", CONFIG_DIR)
    return sqlite_url


def test_sync_then_health(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(env)
    recent = utcnow() - timedelta(hours=2)  # inside the health window
    append(engine, created("20250106_120000_LONG", recent), entry("20250106_120000_LONG", recent))
    engine.dispose()
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "Health Score:" in out and "Gap Breakdown:" in out
    assert main(["health", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["signals"] == 1
    assert set(body) == {
        "total_gaps",
        "health_score",
        "gap_breakdown",
        "signal_coverage",
        "data_confidence",
        "manual_intervention",
        "signals",
        "webhook_spool",
    }
    assert body["webhook_spool"]["dead_letters"] == 0
    assert main(["health"]) == 0
    text = capsys.readouterr().out
    assert "Total Gaps:" in text and "Webhook spool: 0 bytes waiting, 0 dead letters" in text


def test_second_concurrent_sync_exits_cleanly(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(env)
    with sync_lock(engine, "someone-else"):
        assert main(["sync", "--wait", "0.2"]) == 75
    assert "another hybrid sync is running" in capsys.readouterr().err
    engine.dispose()
