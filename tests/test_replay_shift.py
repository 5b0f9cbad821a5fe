"""``alphapulse replay-webhooks --shift-to-now``: the README's replay step puts the sample's
signals and gaps into the health window (issue 18, item 2)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from alphapulse_dagster.cli import main as cli_main
from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.sync.health import health_report
from alphapulse_dagster.sync.sync_cycle import SyncRequest, run_sync
from alphapulse_dagster.webhooks.ingest import ingest_body
from alphapulse_dagster.webhooks.replay import shift_to_now
from alphapulse_dagster.webhooks.webhook_payload import parse_event_time

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_webhooks.jsonl"
NOW = datetime.fromisoformat("2026-12-01T12:00:00+00:00")


def _bodies() -> list[bytes]:
    return [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]


def test_each_symbol_moves_whole_days_to_end_within_the_last_day() -> None:
    original = [json.loads(body) for body in _bodies()]
    shifted = shift_to_now(_bodies(), NOW)
    moved = [json.loads(body) for body in shifted.bodies]
    # BTCUSD ends 2019-06-14 21:59, EURUSD 2017-06-14 14:59; NOW's 12:00 is earlier in the
    # day than both, so both land on 2026-11-30
    assert shifted.days_by_symbol == {"BTCUSD": 2726, "EURUSD": 3456}
    assert len(moved) == len(original) == 61
    for before, after in zip(original, moved, strict=True):
        days = shifted.days_by_symbol[before["symbol"]]
        assert parse_event_time(after["time"]) == parse_event_time(before["time"]) + timedelta(
            days=days
        )
        assert {k: v for k, v in after.items() if k not in ("time", "trade_id", "alert_id")} == {
            k: v for k, v in before.items() if k not in ("time", "trade_id", "alert_id")
        }
    last = {
        symbol: max(parse_event_time(e["time"]) for e in moved if e["symbol"] == symbol)
        for symbol in ("BTCUSD", "EURUSD")
    }
    assert last == {
        "BTCUSD": datetime.fromisoformat("2026-11-30T21:59:00+00:00"),
        "EURUSD": datetime.fromisoformat("2026-11-30T14:59:00+00:00"),
    }
    # the trade id keeps its time of day and direction, with the shifted date; so does an
    # alert_id that quotes it
    ids = {(e["trade_id"], e.get("alert_id")) for e in moved}
    assert ("20261130_090000_BULLISH", "BTCUSD-20261130_090000_BULLISH-entry") in ids
    assert all(not e["trade_id"].startswith(("2017", "2019")) for e in moved)
    # the same moment gives the same bytes: a second replay is answered "duplicate"
    assert shift_to_now(_bodies(), NOW).bodies == shifted.bodies


def test_lines_that_are_not_events_pass_through() -> None:
    bodies = [b"not json", b"[1, 2]", b'{"symbol": "X", "time": "yesterday"}']
    assert shift_to_now(bodies, NOW).bodies == bodies


def test_shifted_sample_fills_the_health_window(db_url: str) -> None:
    """The hand-counted report over the shifted sample (13 TradingView signals)."""
    engine = make_engine(db_url)
    config = load_config()
    try:
        with engine.begin() as connection:
            for body in shift_to_now(_bodies(), NOW).bodies:
                result = ingest_body(connection, body, now=NOW, source_address="test")
                assert result.rejection is None, result.rejection
        sync = run_sync(engine, config, NOW, request=SyncRequest(full=True))
        with engine.connect() as connection:
            report = health_report(connection, NOW, config.hybrid_sync)
    finally:
        engine.dispose()
    # BTCUSD 20:00 BEARISH has only its SIGNAL_CREATED: 16 h PENDING > 12 one-hour bars
    assert len(sync.expired) == 1
    assert report.signals == 13  # 10 BTCUSD + 3 EURUSD trade ids, all within 30 days
    # three trades arrive without a SIGNAL_CREATED (EURUSD 14:00, BTCUSD 07:00 and 15:00):
    # each misses its creation event, HTF alignment, confirmation time and metadata; the
    # two of them without an MFE_UPDATE also miss MAE (no candles cover the shifted day)
    assert {gap: n for gap, n in report.gap_breakdown.items() if n} == {
        "no_signal_created": 3,
        "no_htf_alignment": 3,
        "no_confirmation_time": 3,
        "no_metadata": 3,
        "no_mae": 2,
    }
    assert report.total_gaps == 14
    assert report.kind_breakdown == {"actionable": 12, "expected": 2}
    # scores 100 - (15 + 15 + 10 + 5) = 55 and twice 55 - 5 = 50, ten signals at 100
    assert report.health_score == pytest.approx((10 * 100 + 55 + 50 + 50) / 13, abs=0.01)
    # 10 trades were confirmed (all CLOSED), 7 of them with a SIGNAL_CREATED
    assert report.confirmed_signals == 10
    assert report.signal_coverage == pytest.approx(0.7)


def test_cli_replay_shift_to_now_then_sync_and_health(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's steps with the real clock: replay, sync, ``alphapulse health``."""
    monkeypatch.setenv("ALPHAPULSE_DATABASE_URL", sqlite_url)
    assert cli_main(["replay-webhooks", str(SAMPLE), "--shift-to-now"]) == 0
    replayed = capsys.readouterr().out
    assert "shifted to now: BTCUSD +" in replayed and "accepted 58, duplicate 3" in replayed
    assert cli_main(["sync"]) == 0
    capsys.readouterr()
    assert cli_main(["health", "--json"]) == 0
    health = json.loads(capsys.readouterr().out)
    # whatever the time of day, every trade id lands within the last two days
    assert health["signals"] == 13
    assert health["gap_breakdown"]["no_signal_created"] == 3
    assert health["health_score"] < 100
