"""``alphapulse sync`` and ``alphapulse health`` from the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hybrid_sync_support import append, created, entry, event, registry

from alphapulse_dagster.cli import main
from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_gaps
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


def test_rescan_reaches_settled_signals_after_a_weight_change(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed trade is settled: no incremental cycle looks at it again. After a gap
    weight changes, ``--rescan`` re-detects its gaps: the gap row and the score follow."""
    config = tmp_path / "mtf_config.yaml"
    config.write_text(
        "hybrid_sync:\n  gap_rules:\n    no_signal_created: {weight: 15, kind: actionable}\n"
    )
    monkeypatch.setenv("ALPHAPULSE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ALPHAPULSE_CONFIG_DIR", str(tmp_path))
    tid, at = "20250106_120000_LONG", utcnow() - timedelta(hours=3)
    engine = make_engine(sqlite_url)
    # confirmed without SIGNAL_CREATED, then closed: no_signal_created (15),
    # no_htf_alignment (15), no_confirmation_time (10), no_mae (5), no_metadata (5)
    append(engine, entry(tid, at), event("EXIT", tid, at + timedelta(hours=1), exit_price=99.0))
    assert main(["sync", "--incremental"]) == 0
    assert registry(engine, f"BTCUSDT:{tid}")["health_score"] == 50.0

    config.write_text(
        "hybrid_sync:\n  gap_rules:\n    no_signal_created: {weight: 40, kind: actionable}\n"
    )
    assert main(["sync", "--incremental"]) == 0  # settled: out of the incremental scope
    assert registry(engine, f"BTCUSDT:{tid}")["health_score"] == 50.0
    assert main(["sync", "--incremental", "--rescan"]) == 0
    assert registry(engine, f"BTCUSDT:{tid}")["health_score"] == 25.0
    weights = {gap_type: weight for gap_type, weight, _ in _open_gap_rows(engine)}
    assert weights["no_signal_created"] == 40.0
    engine.dispose()


def _open_gap_rows(engine: sa.Engine) -> list[tuple[str, float, str]]:
    with engine.connect() as conn:
        query = sa.select(signal_gaps.c.gap_type, signal_gaps.c.weight, signal_gaps.c.kind)
        return [tuple(r) for r in conn.execute(query.where(signal_gaps.c.resolved_at.is_(None)))]
