"""POST /webhooks/tradingview in-process, on SQLite and on the real Postgres."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from alphapulse_dagster.api import ApiSettings, create_app
from alphapulse_dagster.api.settings import parse_networks
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import signal_events
from tests.webhook_helpers import SECRET, body, created, entry, events, rejects

TV_IP = "52.89.214.238"
ClientFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def db(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client_for(db_url: str, tmp_path: Path) -> ClientFactory:
    @contextmanager
    def make(
        client: tuple[str, int] = ("127.0.0.1", 40000), **settings: Any
    ) -> Iterator[TestClient]:
        settings.setdefault("webhook_secret", SECRET)
        settings.setdefault("spool_path", tmp_path / "spool" / "webhooks.jsonl")
        app = create_app(ApiSettings(database_url=db_url, **settings))
        with TestClient(app, client=client) as test_client:
            yield test_client

    return make


@pytest.fixture
def client(client_for: ClientFactory) -> Iterator[TestClient]:
    with client_for() as test_client:
        yield test_client


def post(
    client: TestClient, payload: dict[str, Any] | bytes, content_type: str = "application/json"
):  # type: ignore[no-untyped-def]
    content = payload if isinstance(payload, bytes) else body(payload)
    return client.post(
        "/webhooks/tradingview", content=content, headers={"Content-Type": content_type}
    )


# --- accepted forms ---------------------------------------------------------------------


def test_json_body_is_committed_before_the_200(client: TestClient, db: sa.Engine) -> None:
    response = post(client, created())
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "accepted" and isinstance(answer["event_id"], int)
    [row] = events(db)
    assert row["event_id"] == answer["event_id"]
    assert row["event_type"] == "SIGNAL_CREATED"
    assert row["source"] == "tradingview"
    assert row["signal_id"] == "BTCUSD:20190614_120000_BULLISH"
    assert row["trade_id"] == "20190614_120000_BULLISH"
    assert row["event_time"] == datetime(2019, 6, 14, 12, tzinfo=UTC)
    assert "secret" not in row["payload"]
    assert SECRET not in json.dumps(row["payload"])
    assert row["payload"]["timeframe"] == "1h" and row["payload"]["timeframe_raw"] == "60"
    assert row["payload"]["htf_alignment"] == {"4h": "BULLISH", "1d": "NEUTRAL"}


def test_text_plain_body_and_epoch_ms(client: TestClient, db: sa.Engine) -> None:
    response = post(client, entry(time=1560517200000), content_type="text/plain; charset=utf-8")
    assert response.status_code == 200, response.text
    [row] = events(db)
    assert row["event_type"] == "ENTRY"
    assert row["event_time"] == datetime(2019, 6, 14, 13, tzinfo=UTC)
    assert row["payload"]["targets"] == [8450.0, 8540.0, 8630.0]


@pytest.mark.parametrize("interval", ["15", "60", "240", "D", "1D", "15m", "1h", "4h", "1d"])
def test_every_interval_spelling_over_http(
    client: TestClient, db: sa.Engine, interval: str
) -> None:
    assert post(client, created(timeframe=interval)).status_code == 200
    [row] = events(db)
    expected = {"15": "15m", "60": "1h", "240": "4h", "D": "1d", "1D": "1d"}.get(interval, interval)
    assert row["payload"]["timeframe"] == expected


def test_duplicate_gets_the_original_event_id_and_no_second_row(
    client: TestClient, db: sa.Engine
) -> None:
    first = post(client, created()).json()
    again = post(client, created()).json()
    same_alert_other_spelling = post(client, created(timeframe="1h", time=1560513600000)).json()
    assert first["status"] == "accepted"
    assert again == {"status": "duplicate", "event_id": first["event_id"]}
    assert same_alert_other_spelling == again
    by_alert_id = [post(client, entry(alert_id="tv-9")).json() for _ in range(2)]
    assert by_alert_id[1] == {"status": "duplicate", "event_id": by_alert_id[0]["event_id"]}
    assert len(events(db)) == 2


def test_a_static_alert_id_never_drops_a_distinct_event(client: TestClient, db: sa.Engine) -> None:
    # TradingView alerts often carry the same static text on every firing (SPEC §8)
    sent = [
        entry(alert_id="static"),
        entry(alert_id="static", symbol="ETHUSD"),  # another symbol
        created(alert_id="static"),  # another event
        entry(alert_id="static", id="x", note_raw="a"),
        entry(alert_id="static", id="y", note_raw="a"),  # the undocumented id counts
        entry(alert_id="static", id="y", note_raw="b"),  # keys ending in _raw count
    ]
    answers = [post(client, payload).json() for payload in sent]
    assert [a["status"] for a in answers] == ["accepted"] * 6
    assert len({a["event_id"] for a in answers}) == 6
    resend = post(client, {**sent[3], "secret": SECRET}).json()
    assert resend == {"status": "duplicate", "event_id": answers[3]["event_id"]}
    assert len(events(db)) == 6


def test_a_resend_of_an_event_stored_under_an_old_alert_key_is_a_duplicate(
    client: TestClient, db: sa.Engine
) -> None:
    from alphapulse_dagster.webhooks.ingest import webhook_event

    # a row as the receiver stored it before the key became the payload hash
    old = webhook_event(entry(alert_id="tv-7"))
    with db.begin() as connection:
        connection.execute(
            sa.insert(signal_events),
            {
                "source": old.source,
                "event_type": old.event_type,
                "signal_id": old.signal_id,
                "trade_id": old.trade_id,
                "symbol": old.symbol,
                "event_time": old.event_time,
                "received_at": old.event_time,
                "payload": dict(old.payload),
                "idempotency_key": "alert:tv-7",
            },
        )
    [stored] = events(db)
    assert post(client, entry(alert_id="tv-7")).json() == {
        "status": "duplicate",
        "event_id": stored["event_id"],
    }
    # the same alert_id with another payload is another event
    other = post(client, entry(alert_id="tv-7", stop_loss=8200.0)).json()
    assert other["status"] == "accepted" and other["event_id"] != stored["event_id"]
    assert len(events(db)) == 2


def test_out_of_order_entry_before_created_both_land(client: TestClient, db: sa.Engine) -> None:
    entry_answer = post(client, entry()).json()  # ENTRY at 13:00 arrives first
    created_answer = post(client, created()).json()  # SIGNAL_CREATED at 12:00 arrives second
    assert entry_answer["status"] == created_answer["status"] == "accepted"
    assert entry_answer["event_id"] < created_answer["event_id"]  # arrival order
    with db.connect() as connection:
        timeline = connection.execute(
            sa.select(signal_events.c.event_type)
            .where(signal_events.c.signal_id == "BTCUSD:20190614_120000_BULLISH")
            .order_by(signal_events.c.event_time, signal_events.c.event_id)
        ).scalars()
        assert list(timeline) == ["SIGNAL_CREATED", "ENTRY"]  # event-time order


def test_sql_looking_and_unicode_strings_are_data(client: TestClient, db: sa.Engine) -> None:
    nasty = "x'); DROP TABLE signal_events;--"
    response = post(client, created(trade_id=nasty, note="Ünïcødé 🚀 ' \" \\"))
    assert response.status_code == 200
    [row] = events(db)
    assert row["trade_id"] == nasty and row["payload"]["note"] == "Ünïcødé 🚀 ' \" \\"


# --- refusals: status, detail, reject row ------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        (created(secret="wrong"), 401, "secret"),
        ({k: v for k, v in created().items() if k != "secret"}, 401, "secret"),
        (created(secret=12345), 401, "secret"),
        (b"this is not json " + SECRET.encode(), 422, "body"),
        (b"[1,2,3]", 422, "body"),
        (b"", 422, "body"),
        (b"\xff\xfe\xfd", 422, "body"),
        (b"[" * 20000 + b"]" * 20000, 422, "body"),
        (created(trade_id=None), 422, "trade_id"),
        (created(event="BUY"), 422, "event"),
        (created(time="last tuesday"), 422, "time"),
        (created(timeframe="3 weeks"), 422, "timeframe"),
        (entry(entry_price="cheap"), 422, "entry_price"),
        (entry(targets=[8450, "x"]), 422, "targets.1"),
        (created(note="nul\u0000byte"), 422, "note"),
        (b'{"secret": "' + SECRET.encode() + b'", "event": "ENTRY", "x": "\\udc00"}', 422, "x"),
        (created(padding="p" * 70_000), 413, None),
    ],
)
def test_refusals_answer_4xx_and_write_a_reject_row(
    client: TestClient,
    db: sa.Engine,
    payload: dict[str, Any] | bytes,
    status: int,
    field: str | None,
) -> None:
    response = post(client, payload)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 422:
        assert ".".join(str(part) for part in detail[0]["loc"][1:]) == field, detail
    assert events(db) == []
    [reject] = rejects(db, client)
    assert reject["status_code"] == status
    assert reject["field"] == field
    assert reject["reason"]
    assert reject["source_address"] == "127.0.0.1"
    assert SECRET not in reject["body"]
    assert len(reject["body"]) <= 4100
    if isinstance(payload, dict) and status != 413 and "secret" in payload:
        assert "[REDACTED]" in reject["body"] or not isinstance(payload["secret"], str)


def test_declared_too_large_body_is_refused_unread(client: TestClient, db: sa.Engine) -> None:
    big = b"{" + b" " * (64 * 1024 + 1) + b"}"
    response = post(client, big)
    assert response.status_code == 413
    assert rejects(db, client)[0]["status_code"] == 413


def test_no_secret_configured_accepts_and_warns(
    client_for: ClientFactory, db: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), client_for(webhook_secret=None) as open_client:
        payload = created()
        del payload["secret"]
        assert post(open_client, payload).status_code == 200
    assert any("ALPHAPULSE_WEBHOOK_SECRET is not set" in r.message for r in caplog.records)


def test_allow_list_refuses_other_sources(client_for: ClientFactory, db: sa.Engine) -> None:
    allowed = parse_networks("tradingview")
    with client_for(client=("10.1.2.3", 5000), allowed_ips=allowed) as other:
        assert post(other, created()).status_code == 403
    with client_for(client=(TV_IP, 5000), allowed_ips=allowed) as tradingview:
        assert post(tradingview, created()).status_code == 200
    [reject] = rejects(db)
    assert reject["status_code"] == 403 and reject["source_address"] == "10.1.2.3"


def test_forwarded_for_is_trusted_only_from_a_trusted_proxy(
    client_for: ClientFactory, db: sa.Engine
) -> None:
    allowed = parse_networks("tradingview")
    spoof = {"X-Forwarded-For": TV_IP, "Content-Type": "application/json"}
    # no trusted proxy configured: the header is ignored, the peer is refused
    with client_for(client=("10.1.2.3", 5000), allowed_ips=allowed) as direct:
        response = direct.post("/webhooks/tradingview", content=body(created()), headers=spoof)
        assert response.status_code == 403
    proxies = parse_networks("127.0.0.1")
    # behind the trusted proxy: the right-most untrusted hop is the client
    with client_for(
        client=("127.0.0.1", 5000), allowed_ips=allowed, trusted_proxies=proxies
    ) as via:
        response = via.post("/webhooks/tradingview", content=body(created()), headers=spoof)
        assert response.status_code == 200
        # a client cannot smuggle TradingView's address left of its own
        forged = {"X-Forwarded-For": f"{TV_IP}, 10.9.9.9", "Content-Type": "application/json"}
        response = via.post("/webhooks/tradingview", content=body(entry()), headers=forged)
        assert response.status_code == 403
    assert [r["source_address"] for r in rejects(db)] == ["10.1.2.3", "10.9.9.9"]
