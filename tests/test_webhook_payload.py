"""The payload model and body checks of SPEC §16, without a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alphapulse_dagster.webhooks.ingest import Rejection, check_secret, parse_body, webhook_event
from alphapulse_dagster.webhooks.webhook_payload import parse_event_time
from tests.webhook_helpers import SECRET, created, entry


@pytest.mark.parametrize(
    ("sent", "ours"),
    [
        ("15", "15m"),
        ("60", "1h"),
        ("240", "4h"),
        ("D", "1d"),
        ("1D", "1d"),
        ("15m", "15m"),
        ("1h", "1h"),
        ("4h", "4h"),
        ("1d", "1d"),
        (60, "1h"),
    ],
)
def test_every_interval_spelling_is_normalised_and_the_raw_kept(sent: object, ours: str) -> None:
    event = webhook_event(created(timeframe=sent))
    assert event.payload["timeframe"] == ours
    if sent != ours:
        assert event.payload["timeframe_raw"] == sent
    else:
        assert "timeframe_raw" not in event.payload


@pytest.mark.parametrize(
    "sent",
    [
        "2019-06-14T12:00:00Z",
        "2019-06-14T12:00:00+00:00",
        "2019-06-14T14:00:00+02:00",
        "2019-06-14T12:00:00",  # naive = UTC
        1560513600000,
        "1560513600000",
        1560513600000.0,
    ],
)
def test_event_time_iso_or_epoch_ms(sent: object) -> None:
    assert parse_event_time(sent) == datetime(2019, 6, 14, 12, tzinfo=UTC)


@pytest.mark.parametrize("sent", [1560513600, "yesterday", True, None, [], "2019-13-01T00:00:00Z"])
def test_bad_event_times_are_refused(sent: object) -> None:
    with pytest.raises(Rejection) as caught:
        webhook_event(created(time=sent))
    assert caught.value.status_code == 422 and caught.value.field == "time"


def test_event_names_are_case_insensitive_and_the_signal_id_is_symbol_trade_id() -> None:
    event = webhook_event(entry(event="eNtRy"))
    assert event.event_type == "ENTRY"
    assert event.signal_id == "BTCUSD:20190614_120000_BULLISH"
    assert event.source == "tradingview"
    assert event.event_time == datetime(2019, 6, 14, 13, tzinfo=UTC)
    assert "secret" not in event.payload
    assert event.payload["event"] == "ENTRY"


def test_same_alert_in_two_spellings_has_one_idempotency_key() -> None:
    a = webhook_event(created(timeframe="60", time=1560513600000))
    b = webhook_event(created(timeframe="1h", time="2019-06-14T12:00:00Z", secret="other"))
    assert a.idempotency_key == b.idempotency_key
    assert webhook_event(created(alert_id="tv-1")).idempotency_key == "alert:tv-1"


def test_unknown_keys_are_kept() -> None:
    event = webhook_event(created(indicator_version="2.3", extra={"a": [1, 2]}))
    assert event.payload["indicator_version"] == "2.3"
    assert event.payload["extra"] == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event": "BUY"}, "event"),
        ({"event": None}, "event"),
        ({"trade_id": ""}, "trade_id"),
        ({"trade_id": 12}, "trade_id"),
        ({"symbol": "X" * 41}, "symbol"),
        ({"timeframe": "7x"}, "timeframe"),
        ({"direction": "UP"}, "direction"),
        ({"htf_alignment": {"4h": "UP"}}, "htf_alignment.4h"),
        ({"htf_alignment": "BULLISH"}, "htf_alignment"),
        ({"entry_price": -1}, "entry_price"),
        ({"entry_price": "abc"}, "entry_price"),
        ({"entry_price": True}, "entry_price"),
        ({"targets": [8450, -1]}, "targets.1"),
        ({"targets": 8450}, "targets"),
        ({"mfe": -0.5}, "mfe"),
        ({"exit_reason": "PANIC"}, "exit_reason"),
        ({"alert_id": {"a": 1}}, "alert_id"),
        ({"session": "x" * 33}, "session"),
    ],
)
def test_wrong_fields_are_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(Rejection) as caught:
        webhook_event(entry(**change))
    assert caught.value.status_code == 422
    assert caught.value.field == field
    assert field.split(".")[0] in caught.value.reason


@pytest.mark.parametrize("missing", ["event", "trade_id", "symbol", "time"])
def test_missing_required_field_is_named(missing: str) -> None:
    payload = entry()
    del payload[missing]
    with pytest.raises(Rejection) as caught:
        webhook_event(payload)
    assert caught.value.field == missing and "required" in caught.value.reason


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "body"),
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b'"just a string"', "body"),
        (b"\xff\xfe", "body"),
        (b'{"a": NaN}', "body"),
        (b'{"a": 1e999}', "a"),
        (b"[" * 5000 + b"]" * 5000, "body"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "a.a.a"),
        (b'{"note": "nul \\u0000 here"}', "note"),
        (b'{"note": "lone \\ud800 surrogate"}', "note"),
        (b'{"n": ' + b"9" * 5000 + b"}", "body"),
    ],
)
def test_bodies_that_cannot_be_stored_are_refused(raw: bytes, field: str) -> None:
    with pytest.raises(Rejection) as caught:
        parse_body(raw)
    assert caught.value.status_code == 422
    assert caught.value.field is not None and caught.value.field.startswith(field)


def test_body_limit_is_413() -> None:
    with pytest.raises(Rejection) as caught:
        parse_body(json.dumps(created(padding="x" * 70_000)).encode())
    assert caught.value.status_code == 413


def test_secret_constant_time_check() -> None:
    check_secret(created(), None)  # not configured: anything passes
    check_secret(created(), SECRET)
    for sent in ("wrong", "", None, 123):
        with pytest.raises(Rejection) as caught:
            check_secret(created(secret=sent), SECRET)
        assert caught.value.status_code == 401
