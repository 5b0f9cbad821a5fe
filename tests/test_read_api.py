"""The read API: All Signals (filters, keyset pagination), one signal, health, MTF metrics,
token enforcement, OpenAPI — on SQLite and on the real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from alphapulse_dagster.api import ApiSettings, create_app
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import (
    signal_gaps,
    signal_health_metrics,
    signals,
    sync_audit_log,
)
from tests.webhook_helpers import SECRET, body, created, entry

T0 = datetime(2019, 6, 14, tzinfo=UTC)
TOKEN = "read-token-123"


def _signal(n: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "signal_id": f"BTCUSD:2019061{n % 10}_{n:06d}_BULLISH",
        "source": "tradingview",
        "trade_id": f"2019061{n % 10}_{n:06d}_BULLISH",
        "symbol": "BTCUSD" if n % 3 else "EURUSD",
        "direction": "LONG" if n % 2 else "SHORT",
        "timeframe": "1h",
        "status": ("PENDING", "CONFIRMED", "CLOSED", "CANCELLED")[n % 4],
        "signal_time": T0 + timedelta(hours=n),
        "entry_price": 8300.0 + n,
        "stop_loss": 8200.0,
        "targets": [8400.0, 8500.0],
        "htf_alignment": {"4h": "BULLISH"},
        "field_provenance": {"entry_price": {"tier": "0", "confidence": 1.0, "source": "ENTRY"}},
        "health_score": 85.0,
        "first_event_id": 100 + n // 2,  # pairs share a first_event_id: the tie-break matters
        "last_event_id": 200 + n,
        "updated_at": T0,
    }
    row.update(extra)
    return row


@pytest.fixture
def db(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(sa.insert(signals), [_signal(n) for n in range(23)])
        connection.execute(
            sa.insert(signal_gaps),
            [
                {
                    "signal_id": _signal(1)["signal_id"],
                    "gap_type": gap,
                    "kind": "actionable",
                    "weight": 10.0,
                    "fillable": True,
                    "detected_at": T0,
                    "resolved_at": resolved,
                }
                for gap, resolved in (("no_targets", None), ("no_mae", None), ("no_mfe_update", T0))
            ],
        )
        connection.execute(
            sa.insert(sync_audit_log),
            {
                "sync_run_id": "run-1",
                "signal_id": _signal(1)["signal_id"],
                "field": "mfe",
                "old_value": None,
                "new_value": 1.5,
                "tier": "1",
                "confidence": 1.0,
                "reason": "candles",
                "action_timestamp": T0,
            },
        )
    yield engine
    engine.dispose()


@pytest.fixture
def client(db: sa.Engine, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = ApiSettings(database_url=db_url, spool_path=tmp_path / "spool.jsonl")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_pagination_walks_every_item_once(client: TestClient) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/signals", params=params).json()
        seen += [item["signal_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert seen[0] == _signal(22)["signal_id"]  # newest first


def test_pagination_is_stable_under_concurrent_inserts(client: TestClient, db: sa.Engine) -> None:
    first = client.get("/signals", params={"limit": 10}).json()
    with db.begin() as connection:
        connection.execute(
            sa.insert(signals), [_signal(n, first_event_id=1000 + n) for n in (50, 51)]
        )
    rest: list[str] = []
    cursor = first["next_cursor"]
    while cursor:
        page = client.get("/signals", params={"limit": 10, "cursor": cursor}).json()
        rest += [item["signal_id"] for item in page["items"]]
        cursor = page["next_cursor"]
    walked = [item["signal_id"] for item in first["items"]] + rest
    assert sorted(walked) == sorted(_signal(n)["signal_id"] for n in range(23))


def test_item_shape(client: TestClient) -> None:
    [item] = [
        i
        for i in client.get("/signals", params={"limit": 500}).json()["items"]
        if i["signal_id"] == _signal(1)["signal_id"]
    ]
    for key in (
        "signal_id",
        "source",
        "trade_id",
        "symbol",
        "direction",
        "timeframe",
        "status",
        "signal_time",
        "confirmation_time",
        "entry_price",
        "stop_loss",
        "targets",
        "htf_alignment",
        "session",
        "market_state",
        "mfe",
        "mae",
        "exit_price",
        "exit_reason",
        "health_score",
        "gaps",
        "field_provenance",
    ):
        assert key in item, key
    assert item["gaps"] == ["no_mae", "no_targets"]  # the resolved gap is not listed
    assert item["field_provenance"]["entry_price"]["tier"] == "0"
    assert item["signal_time"].startswith("2019-06-14T01:00:00")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "CONFIRMED"}, {n for n in range(23) if n % 4 == 1}),
        ({"symbol": "EURUSD"}, {n for n in range(23) if n % 3 == 0}),
        ({"direction": "LONG", "status": "PENDING"}, set()),
        ({"direction": "SHORT", "status": "PENDING"}, {n for n in range(23) if n % 4 == 0}),
        ({"source": "alphapulse"}, set()),
        ({"since": "2019-06-14T05:00:00Z", "until": "2019-06-14T08:00:00Z"}, {5, 6, 7}),
        ({"since": "2019-06-14T07:00:00+02:00"}, set(range(5, 23))),
    ],
)
def test_filters(client: TestClient, params: dict[str, str], expected: set[int]) -> None:
    items = client.get("/signals", params={**params, "limit": 500}).json()["items"]
    assert {item["signal_id"] for item in items} == {_signal(n)["signal_id"] for n in expected}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 501},
        {"limit": 0},
        {"status": "OPEN"},
        {"cursor": "garbage"},
        {"cursor": "WzEsMl0"},
        {"since": "yesterday"},
        {"direction": "UP"},
    ],
)
def test_bad_query_is_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/signals", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_signal_detail_has_events_gaps_audit(client: TestClient) -> None:
    trade_id = _signal(1)["trade_id"]
    for payload in (entry(trade_id=trade_id), created(trade_id=trade_id)):
        assert client.post("/webhooks/tradingview", content=body(payload)).status_code == 200
    detail = client.get(f"/signals/{_signal(1)['signal_id']}").json()
    assert [e["event_type"] for e in detail["events"]] == ["SIGNAL_CREATED", "ENTRY"]
    assert detail["events"][0]["payload"]["session"] == "NEW_YORK"
    assert [g["gap_type"] for g in detail["gap_details"]] == ["no_mae", "no_targets"]
    assert detail["gaps"] == ["no_mae", "no_targets"]
    assert detail["audit"][0]["field"] == "mfe" and detail["audit"][0]["new_value"] == 1.5
    assert client.get("/signals/BTCUSD:nope").status_code == 404


def test_health_zero_report_then_latest(client: TestClient, db: sa.Engine) -> None:
    zero = client.get("/health").json()
    assert zero["signals"] == 0 and zero["total_gaps"] == 0 and zero["gap_breakdown"] == {}
    with db.begin() as connection:
        for minutes, gaps in ((0, 3), (2, 5)):
            connection.execute(
                sa.insert(signal_health_metrics),
                {
                    "measured_at": T0 + timedelta(minutes=minutes),
                    "sync_run_id": f"r{minutes}",
                    "total_signals": 23,
                    "total_gaps": gaps,
                    "health_score": 91.5,
                    "signal_coverage": 0.8,
                    "data_confidence": 0.95,
                    "manual_intervention": 1,
                    "gap_breakdown": {"no_mae": gaps},
                },
            )
    report = client.get("/health").json()
    assert report["total_gaps"] == 5 and report["signals"] == 23
    assert report["gap_breakdown"] == {"no_mae": 5}
    for key in ("health_score", "signal_coverage", "data_confidence", "manual_intervention"):
        assert key in report


def test_mtf_metrics_route_serves_the_metrics(client: TestClient, db: sa.Engine) -> None:
    from alphapulse_dagster.market.timeframes import duration
    from alphapulse_dagster.signals.signal_cache import SignalCache
    from alphapulse_dagster.signals.signal_store import store_signals
    from tests.signal_factory import refined_signal

    now = datetime.now(UTC)
    signals = [
        refined_signal(timestamp=now - timedelta(hours=30)),
        refined_signal(
            direction="SHORT",
            timestamp=now - timedelta(hours=2),
            entry_strategy="MARKET_ENTRY",
            entry_pattern="INSUFFICIENT_DATA",
            entry_improvement_bps=0.0,
            entry_confidence=0.5,
        ),
    ]
    store_signals(db, signals, SignalCache(None), now, 4, duration)
    answer = client.get("/metrics/mtf")
    assert answer.status_code == 200
    body = answer.json()
    assert body["total_signals"] == 2
    assert body["strategy_distribution"] == {"FIBONACCI_618": 1, "MARKET_ENTRY": 1}
    assert body["refinement_success_rate"] == 50.0
    assert body["mean_entry_improvement_bps"] == 25.0  # (50 + 0) / 2
    assert body["avg_entry_confidence"] == 0.58  # (0.66 + 0.5) / 2
    assert body["signals_last_24h"] == 1
    assert body["fallbacks"] == {"INSUFFICIENT_DATA": 1, "REFINEMENT_ERROR": 0}
    assert body["fill_rate"] is None  # nothing resolved yet


def test_token_enforcement(db: sa.Engine, db_url: str, tmp_path: Path) -> None:
    settings = ApiSettings(
        database_url=db_url,
        api_token=TOKEN,
        webhook_secret=SECRET,
        spool_path=tmp_path / "spool.jsonl",
    )
    with TestClient(create_app(settings)) as client:
        for path in ("/signals", f"/signals/{_signal(1)['signal_id']}", "/health"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
            ok = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, path
        assert client.get("/healthz").json()["database"] == "ok"  # open
        # the webhook is authenticated by its secret, not by the token
        assert client.post("/webhooks/tradingview", content=body(created())).status_code == 200
        schema = client.get("/openapi.json").json()
        assert "/webhooks/tradingview" in schema["paths"] and "/signals" in schema["paths"]
        assert "HTTPBearer" in schema["components"]["securitySchemes"]
        assert client.get("/docs").status_code == 200
