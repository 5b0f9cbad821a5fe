"""The payload model and body checks of SPEC §16, without a database."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

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


def test_idempotency_key_is_the_hash_of_the_canonical_payload_without_secret() -> None:
    # hand-checked: sha256 of the canonical JSON (sorted keys, no spaces) of the
    # normalised payload without secret and without the derived *_raw spellings
    payload = created(alert_id="tv-1")
    canonical = {k: v for k, v in payload.items() if k != "secret"}
    canonical.update(timeframe="1h", htf_alignment={"4h": "BULLISH", "1d": "NEUTRAL"})
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    expected = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert webhook_event(payload).idempotency_key == expected


def test_an_ordinary_event_keeps_the_key_it_was_stored_with() -> None:
    # before the fix the key of an event without alert_id/id was the hash of the stored
    # payload without its *_raw keys: for one without keys of its own ending in _raw that
    # is the same hash, so a resend of an old event is still a duplicate
    event = webhook_event(created(timeframe="60", time=1560513600000))
    assert {"time_raw", "timeframe_raw"} <= set(event.payload)
    old_identity = {k: v for k, v in event.payload.items() if not k.endswith("_raw")}
    old_text = json.dumps(old_identity, sort_keys=True, separators=(",", ":"))
    assert event.idempotency_key == "sha256:" + hashlib.sha256(old_text.encode()).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"symbol": "ETHUSD"},  # same alert_id, another symbol
        {"event": "CANCELLED"},  # same alert_id, another event
        {"note_raw": "b"},  # keys ending in _raw count
        {"id": "static-2"},  # the undocumented id key counts, never replaces
        {"alert_id": "tv-2"},  # alert_id narrows the key
    ],
)
def test_alert_id_and_id_never_replace_the_hash(change: dict[str, object]) -> None:
    base = created(alert_id="tv-1", id="static-1", note_raw="a")
    first = webhook_event(base)
    other = webhook_event({**base, **change})
    assert first.idempotency_key != other.idempotency_key
    # a true resend (another secret is not part of the event) is the same key
    assert webhook_event({**base, "secret": "x"}).idempotency_key == first.idempotency_key


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


# --- SPEC §14 semantics: 422 naming the field ------------------------------------------

NOW = datetime(2019, 6, 14, 13, 0, tzinfo=UTC)


def test_event_time_more_than_max_future_seconds_ahead_is_refused() -> None:
    at_limit = NOW + timedelta(seconds=300)
    assert webhook_event(created(time=at_limit.isoformat()), now=NOW).event_time == at_limit
    with pytest.raises(Rejection) as caught:
        webhook_event(created(time=(NOW + timedelta(seconds=301)).isoformat()), now=NOW)
    assert caught.value.status_code == 422 and caught.value.field == "time"
    assert "300 s in the future" in caught.value.reason
    with pytest.raises(Rejection) as caught:
        webhook_event(created(time="2099-01-01T00:00:00Z"))  # against the real clock
    assert caught.value.field == "time"
    # configurable
    later = (NOW + timedelta(hours=1)).isoformat()
    assert webhook_event(created(time=later), now=NOW, max_future_seconds=3600)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stop_loss": 8360.0}, "stop_loss"),  # LONG stop at the entry
        ({"stop_loss": 8400.0}, "stop_loss"),  # LONG stop above the entry
        ({"targets": [8450.0, 8300.0]}, "targets.1"),  # LONG target below the entry
        ({"targets": [8360.0]}, "targets.0"),
        ({"direction": "BULLISH", "stop_loss": 8400.0}, "stop_loss"),
        ({"direction": "SHORT"}, "stop_loss"),  # SHORT stop below the entry
        ({"direction": "BEARISH", "stop_loss": 8450.0, "targets": [8300.0, 8400.0]}, "targets.1"),
        ({"symbol": "BTC\u202eUSD"}, "symbol"),  # RTL override
        ({"symbol": "BTC\u200dUSD"}, "symbol"),  # zero-width joiner
        ({"trade_id": "20190614_120000_\u200bLONG"}, "trade_id"),  # zero-width space (Cf)
        ({"trade_id": "a\tb"}, "trade_id"),  # control (Cc)
        ({"trade_id": "a:" + "%" * 75}, "trade_id"),  # 128+ characters once encoded
    ],
)
def test_nonsense_is_a_422_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(Rejection) as caught:
        webhook_event(entry(**change), now=NOW)
    assert caught.value.status_code == 422
    assert caught.value.field == field, caught.value.reason


def test_sound_prices_and_ordinary_symbols_pass() -> None:
    short = entry(direction="SHORT", stop_loss=8450.0, targets=[8270.0, 8180.0])
    assert webhook_event(short, now=NOW).event_type == "ENTRY"
    assert webhook_event(entry(symbol="NQ1!", trade_id="Ünïcode_ok"), now=NOW).symbol == "NQ1!"
    # no direction: nothing to check the prices against
    assert webhook_event(entry(direction=None, stop_loss=9000.0), now=NOW)


def test_signal_ids_are_injective() -> None:
    one = webhook_event(created(symbol="X", trade_id="a:b"))
    two = webhook_event(created(symbol="X:a", trade_id="b"))
    assert (one.signal_id, two.signal_id) == ("X:a%3Ab", "X%3Aa:b")
    assert webhook_event(created(symbol="X%3Aa", trade_id="b")).signal_id == "X%253Aa:b"
    assert webhook_event(created(symbol="NQ1!")).signal_id == "NQ1!:20190614_120000_BULLISH"


# --- the secret, in any spelling ---------------------------------------------------------


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


@pytest.mark.parametrize(
    "raw",
    [
        # all-escaped secret, the rest refused (bad event)
        f'{{"secret":"{_escaped(SECRET)}","event":"BUY","trade_id":"t","symbol":"S","time":1}}',
        # half-escaped, and the secret repeated in a nested object and a list
        '{"secret":"s3\\u0063ret-\\u00dc-value","event":"BUY",'
        f'"meta":{{"secret":"{_escaped(SECRET)}","note":["x {_escaped(SECRET)} y"]}}}}',
        # not JSON at all (a text/plain alert), secret as typed
        f"secret={SECRET} event=BUY",
        # cut off mid-string, escaped
        f'{{"event":"BUY","secret":"{_escaped(SECRET)}',
    ],
)
def test_the_secret_is_redacted_by_its_parsed_value(raw: str) -> None:
    from alphapulse_dagster.webhooks.ingest import reject_row

    row = reject_row(
        Rejection(422, "event: bad", "event"),
        raw.encode(),
        received_at=NOW,
        source_address="127.0.0.1",
        secret=SECRET,
    )
    stored = row["body"]
    assert "[REDACTED]" in stored
    assert SECRET not in stored
    assert _escaped(SECRET) not in stored and "s3\\u0063ret" not in stored
    # what is left, decoded, does not spell the secret either
    for token in re.findall(r'"(?:[^"\\]|\\.)*"', stored):
        assert SECRET not in json.loads(token)


def test_a_sent_secret_nested_or_repeated_is_never_stored_in_the_event() -> None:
    from alphapulse_dagster.webhooks.ingest import redact_secrets

    raw = created(meta={"secret": "another", "note": f"the secret is {SECRET}"})
    event = webhook_event(redact_secrets(raw, [SECRET]))
    assert SECRET not in json.dumps(event.payload, ensure_ascii=False)
    assert event.payload["meta"] == {
        "secret": "[REDACTED]",
        "note": "the secret is [REDACTED]",
    }
