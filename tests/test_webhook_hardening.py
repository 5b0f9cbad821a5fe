"""Issue 13 on the in-process app, on SQLite and the real Postgres: nonsense payloads are
422s naming the field, the secret is never stored in any spelling, ids with ``!``, ``:``
and ``%`` are served by ``GET /signals/{id}``, and the OpenAPI document tells the read
API's 401 and the time bounds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from alphapulse_dagster.api import ApiSettings, create_app
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.sync.projection import project_log
from tests.webhook_helpers import SECRET, body, created, entry, events, rejects


@pytest.fixture
def db(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = ApiSettings(
        database_url=db_url, webhook_secret=SECRET, spool_path=tmp_path / "spool.jsonl"
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post(
    client: TestClient, payload: dict[str, Any] | bytes, content_type: str = "application/json"
):  # type: ignore[no-untyped-def]
    content = payload if isinstance(payload, bytes) else body(payload)
    return client.post(
        "/webhooks/tradingview", content=content, headers={"Content-Type": content_type}
    )


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


# --- item 10: nonsense is a 422 naming the field -----------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (created(time="2099-01-01T00:00:00Z"), "time"),
        (created(time=_in(3600)), "time"),
        (entry(stop_loss=8400.0), "stop_loss"),  # LONG stop above the entry
        (entry(targets=[8450.0, 8100.0]), "targets.1"),  # LONG target below the entry
        (entry(direction="SHORT", stop_loss=8450.0, targets=[8500.0]), "targets.0"),
        (created(symbol="BTC\u202eUSD"), "symbol"),  # RTL override
        (created(symbol="BTC\u200dUSD"), "symbol"),  # zero-width joiner
        (created(trade_id="20190614_120000_\u2066LONG"), "trade_id"),
    ],
)
def test_nonsense_is_refused_with_the_field_named(
    client: TestClient, db: sa.Engine, payload: dict[str, Any], field: str
) -> None:
    response = post(client, payload)
    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert ".".join(str(part) for part in detail["loc"][1:]) == field
    assert events(db) == []
    [reject] = rejects(db, client)
    assert reject["field"] == field


def test_max_future_seconds_is_configurable(db_url: str, db: sa.Engine, tmp_path: Path) -> None:
    settings = ApiSettings(
        database_url=db_url,
        webhook_secret=SECRET,
        spool_path=tmp_path / "spool.jsonl",
        max_future_seconds=7200,
    )
    with TestClient(create_app(settings)) as client:
        assert post(client, created(time=_in(3600))).status_code == 200
        assert post(client, created(time=_in(10_000))).status_code == 422
    assert ApiSettings.from_env({"ALPHAPULSE_MAX_FUTURE_SECONDS": "60"}).max_future_seconds == 60
    with pytest.raises(ValueError, match="ALPHAPULSE_MAX_FUTURE_SECONDS"):
        ApiSettings.from_env({"ALPHAPULSE_MAX_FUTURE_SECONDS": "soon"})


# --- item 9: the secret, in any spelling, is never stored or echoed -----------------------


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(char):04x}" for char in text)


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        # the secret all-escaped passes the check; the rest of the payload is refused
        (
            '{"secret":"%s","event":"BUY","trade_id":"t","symbol":"S","time":1}',
            "application/json",
        ),
        # the same sent as text/plain (TradingView's type for a message it cannot parse)
        (
            '{"secret":"%s","event":"ENTRY","trade_id":"t","symbol":"S","time":"x"}',
            "text/plain",
        ),
        # nested and repeated, the top-level one half-escaped
        (
            '{"secret":"s3\\u0063ret-\\u00dc-value","event":"ENTRY","trade_id":"t",'
            '"symbol":"S","time":"x","meta":{"secret":"%s","note":["is %s"]}}',
            "application/json",
        ),
    ],
)
def test_an_escaped_secret_is_redacted_in_the_reject_row(
    client: TestClient, db: sa.Engine, raw: str, content_type: str
) -> None:
    sent = raw.replace("%s", _escaped(SECRET)).encode()
    assert json.loads(sent)["secret"] == SECRET  # it is the right secret, escaped
    response = post(client, sent, content_type)
    assert response.status_code == 422
    assert SECRET not in response.text and _escaped(SECRET) not in response.text
    [reject] = rejects(db, client)
    for stored in (reject["body"], reject["reason"], reject["field"] or ""):
        assert SECRET not in stored
        assert _escaped(SECRET) not in stored and "s3\\u0063ret" not in stored
    assert "[REDACTED]" in reject["body"]


def test_the_secret_repeated_inside_an_accepted_payload_is_not_stored(
    client: TestClient, db: sa.Engine
) -> None:
    payload = created(meta={"secret": SECRET, "note": f"key {SECRET}"})
    assert post(client, payload).status_code == 200
    [row] = events(db)
    assert SECRET not in json.dumps(row["payload"], ensure_ascii=False)
    assert row["payload"]["meta"] == {"secret": "[REDACTED]", "note": "key [REDACTED]"}


# --- item 3: ids with !, : and % are served -------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "trade_id", "signal_id"),
    [
        ("NQ1!", "20190614_120000_LONG", "NQ1!:20190614_120000_LONG"),
        ("BINANCE:BTCUSDT", "a:b", "BINANCE%3ABTCUSDT:a%3Ab"),
        ("X%", "100%_sure", "X%25:100%25_sure"),
    ],
)
def test_signal_detail_serves_ids_with_bang_colon_and_percent(
    client: TestClient, db: sa.Engine, symbol: str, trade_id: str, signal_id: str
) -> None:
    assert post(client, created(symbol=symbol, trade_id=trade_id)).status_code == 200
    with db.begin() as conn:
        project_log(conn, datetime(2019, 6, 15, tzinfo=UTC))
    [row] = events(db)
    assert row["signal_id"] == signal_id
    encoded = client.get(f"/signals/{quote(signal_id, safe='')}")
    assert encoded.status_code == 200, encoded.text
    assert (encoded.json()["symbol"], encoded.json()["trade_id"]) == (symbol, trade_id)
    # pasted as is, without encoding its '%'
    assert client.get(f"/signals/{signal_id}").json()["signal_id"] == signal_id


def test_two_pairs_that_used_to_share_an_id_are_two_signals(
    client: TestClient, db: sa.Engine
) -> None:
    post(client, created(symbol="X", trade_id="a:b"))
    post(client, created(symbol="X:a", trade_id="b", direction="BEARISH"))
    with db.begin() as conn:
        project_log(conn, datetime(2019, 6, 15, tzinfo=UTC))
    one = client.get("/signals/X:a%253Ab").json()
    two = client.get("/signals/X%253Aa:b").json()
    assert (one["symbol"], one["trade_id"], one["direction"]) == ("X", "a:b", "LONG")
    assert (two["symbol"], two["trade_id"], two["direction"]) == ("X:a", "b", "SHORT")


# --- also: the OpenAPI document ------------------------------------------------------------


def test_openapi_describes_the_read_401_and_the_time_bounds(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/signals", "/signals/{signal_id}", "/health", "/metrics/mtf"):
        assert "401" in schema["paths"][path]["get"]["responses"], path
    assert "401" not in schema["paths"]["/healthz"]["get"]["responses"]
    webhook = schema["paths"]["/webhooks/tradingview"]["post"]
    time_doc = webhook["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "time"
    ]["description"]
    assert "max_future_seconds" in time_doc and "2000-01-01" in time_doc
    assert "408" in webhook["responses"]
    assert "429" in webhook["responses"]  # a rationed source turned away (api/flood_gate.py)
