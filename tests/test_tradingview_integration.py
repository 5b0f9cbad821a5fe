"""The indicator side: every JSON template in the Pine script validates against the API's
payload model; the bundled sample stream is valid, realistic and priced from the candles."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from alphapulse_dagster.cli import main as cli_main
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_events, webhook_rejects
from alphapulse_dagster.webhooks.ingest import check_secret, parse_body, webhook_event

REPO = Path(__file__).resolve().parents[1]
PINE = REPO / "integrations" / "tradingview" / "alphapulse_signals.pine"
SAMPLE = REPO / "data" / "sample_webhooks.jsonl"
TEMPLATE = re.compile(r"^var string (TPL_\w+) = '(.*)'\s*$", re.MULTILINE)

# what the script substitutes for each placeholder (numbers unquoted in the templates)
PLACEHOLDERS = {
    "secret": "demo-secret",
    "trade_id": "20190614_120000_BULLISH",
    "symbol": "BTCUSD",
    "time": "1560513600000",
    "timeframe": "60",
    "direction": "BULLISH",
    "htf1": "240",
    "htf1_trend": "BULLISH",
    "htf2": "D",
    "htf2_trend": "NEUTRAL",
    "session": "LONDON_NEW_YORK",
    "market_state": "TRENDING",
    "price": "8360.0",
    "entry_price": "8341.2",
    "stop_loss": "8250.1",
    "tp1": "8462.5",
    "tp2": "8523.2",
    "tp3": "8644.6",
    "mfe": "1.25",
    "mae": "0.3",
    "highest": "8455.0",
    "lowest": "8312.4",
    "exit_price": "8644.6",
    "exit_reason": "TARGET",
    "reason": "EXPIRED: no fill within 12 bars",
}


def _templates() -> dict[str, str]:
    return dict(TEMPLATE.findall(PINE.read_text()))


def test_the_pine_script_has_one_template_per_event() -> None:
    templates = _templates()
    assert set(templates) == {
        "TPL_SIGNAL_CREATED", "TPL_ENTRY", "TPL_MFE_UPDATE", "TPL_EXIT", "TPL_CANCELLED"
    }  # fmt: skip
    source = PINE.read_text()
    assert source.count("//@version=5") == 1
    for name in templates:
        assert f"common({name}," in source, f"{name} is never sent"


@pytest.mark.parametrize("name", sorted(TEMPLATE.findall(PINE.read_text())), ids=lambda t: t[0])
def test_every_pine_template_validates_against_the_payload_model(name: tuple[str, str]) -> None:
    label, template = name
    used = set(re.findall(r"\{\{(\w+)\}\}", template))
    assert used <= set(PLACEHOLDERS), used - set(PLACEHOLDERS)
    message = re.sub(r"\{\{(\w+)\}\}", lambda m: PLACEHOLDERS[m.group(1)], template)
    raw = parse_body(message.encode())
    check_secret(raw, "demo-secret")
    event = webhook_event(raw)
    assert label == f"TPL_{event.event_type}"
    assert event.event_time == datetime(2019, 6, 14, 12, tzinfo=UTC)
    if event.event_type == "SIGNAL_CREATED":
        assert event.payload["htf_alignment"] == {"4h": "BULLISH", "1d": "NEUTRAL"}
        assert event.payload["timeframe"] == "1h"
    if event.event_type == "ENTRY":
        assert event.payload["targets"] == [8462.5, 8523.2, 8644.6]


def _sample() -> list[dict[str, object]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def _candles(symbol: str) -> dict[datetime, dict[str, float]]:
    with open(REPO / "data" / "sample" / f"{symbol}_1h.csv", newline="") as handle:
        return {
            datetime.fromisoformat(row["open_time"].replace("Z", "+00:00")): {
                key: float(row[key]) for key in ("open", "high", "low", "close")
            }
            for row in csv.DictReader(handle)
        }


def test_sample_stream_is_valid_and_realistic() -> None:
    lines = _sample()
    events = [webhook_event(line) for line in lines]  # every line validates
    assert all(line["secret"] == "demo-secret" for line in lines)
    by_signal: dict[str, list[str]] = defaultdict(list)
    for event in events:
        by_signal[event.signal_id].append(event.event_type)
    assert 10 <= len(by_signal) <= 15
    assert {e.symbol for e in events} == {"BTCUSD", "EURUSD"}
    kinds = Counter(e.event_type for e in events)
    assert set(kinds) == {"SIGNAL_CREATED", "ENTRY", "MFE_UPDATE", "EXIT", "CANCELLED"}
    keys = Counter(e.idempotency_key for e in events)
    assert sum(n - 1 for n in keys.values()) >= 2, "some duplicates"
    confirmed_without_created = [
        s for s, types in by_signal.items() if "ENTRY" in types and "SIGNAL_CREATED" not in types
    ]
    assert len(confirmed_without_created) >= 2, "coverage gaps"
    assert any(e.event_type == "ENTRY" and "targets" not in e.payload for e in events)
    # out of order: an ENTRY that arrives before its SIGNAL_CREATED
    first_seen: dict[str, str] = {}
    for event in events:
        first_seen.setdefault(event.signal_id, event.event_type)
    created_signals = {e.signal_id for e in events if e.event_type == "SIGNAL_CREATED"}
    assert any(first_seen[s] == "ENTRY" for s in created_signals)
    # every spelling the indicator may send
    assert {line.get("timeframe") for line in lines} >= {"60", "240", "1h"}
    assert any(isinstance(line["time"], int) for line in lines)
    assert any(str(line["event"]).islower() for line in lines)


def test_sample_prices_come_from_the_candles() -> None:
    candles = {symbol: _candles(symbol) for symbol in ("BTCUSD", "EURUSD")}
    for event in (webhook_event(line) for line in _sample()):
        bars = candles[event.symbol]
        hour = event.event_time.replace(minute=0, second=0, microsecond=0)
        assert hour in bars, f"{event.signal_id} {event.event_type} outside the candles"
        if event.event_type == "ENTRY":
            # the entry fills at the open of the bar it happens in
            assert event.payload["entry_price"] == round(bars[hour]["open"], 5)
            stop, entry = event.payload["stop_loss"], event.payload["entry_price"]
            assert isinstance(stop, float) and isinstance(entry, float)
            assert (stop < entry) == (event.payload["direction"] == "LONG")


def test_replay_sample_straight_into_the_database_twice(db_url: str) -> None:
    assert cli_main(["replay-webhooks", str(SAMPLE), "--database-url", db_url]) == 0
    assert cli_main(["replay-webhooks", str(SAMPLE), "--database-url", db_url]) == 0
    engine = make_engine(db_url)
    with engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(signal_events)).scalar()
        rejected = connection.execute(
            sa.select(sa.func.count()).select_from(webhook_rejects)
        ).scalar()
    engine.dispose()
    distinct = len({webhook_event(line).idempotency_key for line in _sample()})
    assert count == distinct and rejected == 0
