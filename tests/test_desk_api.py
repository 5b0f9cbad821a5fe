"""The desk's JSON endpoints (health history, gap overview, candles, trades in R), the
strategy filter of All Signals, the timeline's inferred/superseded marks, and the page and
/docs served offline — on SQLite and on the real Postgres."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from alphapulse_dagster.api import ApiSettings, create_app
from alphapulse_dagster.api.desk import STATIC_DIR
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.tables import (
    ai_signals_mtf,
    candles,
    signal_events,
    signal_gaps,
    signal_health_metrics,
    signal_outcomes,
    signals,
)

T0 = datetime(2019, 6, 14, tzinfo=UTC)


def _signal(signal_id: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "signal_id": signal_id,
        "source": "tradingview",
        "symbol": "BTCUSD",
        "direction": "LONG",
        "timeframe": "1h",
        "status": "PENDING",
        "signal_time": T0,
        # every row of one multi-row insert must name the same columns
        **dict.fromkeys(("entry_price", "stop_loss", "exit_price", "mfe", "mae", "closed_at")),
        "field_provenance": {},
        "first_event_id": 1,
        "last_event_id": 1,
        "updated_at": T0,
    }
    row.update(extra)
    return row


def _mtf(signal_id: str, strategy: str) -> dict[str, Any]:
    return {
        "signal_id": signal_id, "symbol": "BTCUSD", "direction": "LONG",
        "signal_timeframe": "4h", "entry_timeframe": "1h", "timestamp": T0,
        "signal_confidence": 0.7, "model_heads_analysis": {}, "market_price": 100.0,
        "entry_price": 99.0, "stop_loss": 97.0, "take_profits": [103.0], "targets_r": [2.0],
        "risk_reward_ratio": 2.0, "entry_strategy": strategy, "entry_pattern": "NO_KEY_LEVEL",
        "entry_confidence": 0.5, "atr": 1.0, "entry_improvement_bps": 0.0,
        "htf_alignment": {}, "status": "PENDING", "expires_at": T0, "created_at": T0,
    }  # fmt: skip


@pytest.fixture
def db(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(db: sa.Engine, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = ApiSettings(database_url=db_url, spool_path=tmp_path / "spool.jsonl")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_health_history_is_oldest_first_and_keeps_the_latest(
    client: TestClient, db: sa.Engine
) -> None:
    def report(hour: int, score: float) -> dict[str, Any]:
        return {
            "measured_at": T0 + timedelta(hours=hour), "total_signals": 10 + hour,
            "total_gaps": hour, "health_score": score, "signal_coverage": 0.5,
            "data_confidence": None, "manual_intervention": 1, "gap_breakdown": {},
        }  # fmt: skip

    with db.begin() as connection:  # inserted out of time order
        connection.execute(
            sa.insert(signal_health_metrics), [report(2, 80.0), report(0, 90.5), report(1, 85.0)]
        )
    points = client.get("/health/history").json()["points"]
    assert [(p["measured_at"], p["health_score"], p["signals"]) for p in points] == [
        ("2019-06-14T00:00:00Z", 90.5, 10),
        ("2019-06-14T01:00:00Z", 85.0, 11),
        ("2019-06-14T02:00:00Z", 80.0, 12),
    ]
    latest_two = client.get("/health/history", params={"limit": 2}).json()["points"]
    assert [p["health_score"] for p in latest_two] == [85.0, 80.0]


def test_gap_overview_counts_the_report_window_and_lists_manual_attention(
    client: TestClient, db: sa.Engine
) -> None:
    now = datetime.now(UTC)
    recent, recent2, old = "BTCUSD:recent", "BTCUSD:recent2", "BTCUSD:old"
    with db.begin() as connection:
        connection.execute(
            sa.insert(signals),
            [
                _signal(recent, signal_time=now - timedelta(days=1), status="CLOSED"),
                _signal(recent2, signal_time=now - timedelta(days=2)),
                _signal(old, signal_time=now - timedelta(days=60)),  # outside 30 days
            ],
        )

        def gap(signal_id: str, gap_type: str, fillable: bool, **extra: Any) -> dict[str, Any]:
            return {
                "signal_id": signal_id, "gap_type": gap_type, "kind": "actionable",
                "weight": 10.0, "fillable": fillable, "detected_at": now - timedelta(hours=1),
                "resolved_at": None, **extra,
            }  # fmt: skip

        connection.execute(
            sa.insert(signal_gaps),
            [
                gap(recent, "no_signal_created", False),
                gap(recent, "no_htf_alignment", False),
                gap(recent, "no_targets", True),
                gap(recent2, "no_targets", True),
                gap(recent2, "no_mae", False, kind="expected", resolved_at=now),
                gap(old, "no_metadata", False),
            ],
        )
    overview = client.get("/health/gaps").json()
    assert overview["breakdown"] == [
        {"gap_type": "no_targets", "kind": "actionable", "fillable": True, "gaps": 2},
        {"gap_type": "no_htf_alignment", "kind": "actionable", "fillable": False, "gaps": 1},
        {"gap_type": "no_signal_created", "kind": "actionable", "fillable": False, "gaps": 1},
    ]
    [item] = overview["attention"]
    assert (item["signal_id"], item["status"], item["gap_types"]) == (
        recent, "CLOSED", ["no_htf_alignment", "no_signal_created"]
    )  # fmt: skip


def test_candles_window_and_limit(client: TestClient, db: sa.Engine) -> None:
    with db.begin() as connection:
        connection.execute(
            sa.insert(candles),
            [
                {"symbol": "BTCUSD", "timeframe": "1h", "open_time": T0 + timedelta(hours=h),
                 "open": 100.0 + h, "high": 101.0 + h, "low": 99.0 + h, "close": 100.5 + h,
                 "volume": 7.0}
                for h in range(6)
            ]
            + [{"symbol": "BTCUSD", "timeframe": "4h", "open_time": T0, "open": 1.0,
                "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}],
        )  # fmt: skip
    params = {"symbol": "BTCUSD", "timeframe": "1h", "since": "2019-06-14T01:00:00Z",
              "until": "2019-06-14T05:00:00Z"}  # fmt: skip
    bars = client.get("/candles", params=params).json()["candles"]
    assert [(b["time"], b["open"]) for b in bars] == [
        (int((T0 + timedelta(hours=h)).timestamp()), 100.0 + h) for h in (1, 2, 3, 4)
    ]
    latest = client.get("/candles", params={**params, "limit": 2}).json()["candles"]
    assert [b["open"] for b in latest] == [103.0, 104.0]
    none = client.get("/candles", params={"symbol": "NQ1!", "timeframe": "1h"}).json()
    assert none == {"symbol": "NQ1!", "timeframe": "1h", "candles": []}


def test_trades_in_r_from_reported_exits_then_from_signal_outcomes(
    client: TestClient, db: sa.Engine
) -> None:
    with db.begin() as connection:
        connection.execute(
            sa.insert(signals),
            [
                # LONG 100 → 125 with the stop at 90: +2.5R; SHORT 100 → 105, stop 110: −0.5R
                _signal("a", status="CLOSED", entry_price=100.0, stop_loss=90.0,
                        exit_price=125.0, mfe=2.8, mae=0.3, closed_at=T0 + timedelta(hours=5)),
                _signal("b", direction="SHORT", status="CLOSED", entry_price=100.0,
                        stop_loss=110.0, exit_price=105.0, mfe=0.4, mae=0.9,
                        closed_at=T0 + timedelta(hours=2)),
                _signal("c", status="CONFIRMED", entry_price=100.0, stop_loss=90.0),
            ],
        )  # fmt: skip
    reported = client.get("/analytics/trades").json()
    assert reported["source"] == "reported_exits"
    assert [(t["signal_id"], t["r"], t["mfe_r"], t["mae_r"]) for t in reported["trades"]] == [
        ("b", -0.5, 0.4, 0.9),
        ("a", 2.5, 2.8, 0.3),
    ]
    required = {
        "source": "tradingview",
        "symbol": "BTCUSD",
        "direction": "LONG",
        "timeframe": "1h",
        "signal_time": T0,
        "ambiguous": False,
        "evaluated_at": T0,
    }
    with db.begin() as connection:  # as the outcomes assets write them (migration 0007)
        connection.execute(
            sa.insert(signal_outcomes),
            [
                {**required, "signal_id": "a", "entry_mode": "actual", "status": "CLOSED",
                 "exit_at": T0, "r_multiple": 1.25, "mfe_r": 1.5, "mae_r": 0.2},
                {**required, "signal_id": "a", "entry_mode": "market", "status": "CLOSED",
                 "exit_at": T0, "r_multiple": 0.5, "mfe_r": 1.0, "mae_r": 0.4},
                {**required, "signal_id": "c", "entry_mode": "actual", "status": "OPEN",
                 "exit_at": None, "r_multiple": None, "mfe_r": 0.3, "mae_r": 0.1},
            ],
        )  # fmt: skip
    measured = client.get("/analytics/trades").json()
    assert measured["source"] == "signal_outcomes"
    assert [(t["signal_id"], t["r"]) for t in measured["trades"]] == [("a", 1.25)]


def test_strategy_filter_and_column(client: TestClient, db: sa.Engine) -> None:
    fib, market = str(uuid.uuid4()), str(uuid.uuid4())
    with db.begin() as connection:
        connection.execute(
            sa.insert(signals),
            [
                _signal(fib, source="alphapulse", first_event_id=3),
                _signal(market, source="alphapulse", first_event_id=2),
                _signal("BTCUSD:tv", first_event_id=1),
            ],
        )
        connection.execute(
            sa.insert(ai_signals_mtf),
            [_mtf(fib, "FIBONACCI"), {**_mtf(market, "MARKET_ENTRY"), "direction": "SHORT"}],
        )
    every = client.get("/signals").json()["items"]
    assert [(i["signal_id"], i["entry_strategy"]) for i in every] == [
        (fib, "FIBONACCI"), (market, "MARKET_ENTRY"), ("BTCUSD:tv", None)
    ]  # fmt: skip
    only = client.get("/signals", params={"strategy": "FIBONACCI"}).json()["items"]
    assert [i["signal_id"] for i in only] == [fib]
    assert client.get("/signals", params={"strategy": "NONE"}).json()["items"] == []
    assert client.get(f"/signals/{fib}").json()["entry_strategy"] == "FIBONACCI"


@pytest.mark.parametrize(
    ("row", "superseded"),
    [
        ({"status": "CANCELLED", "status_reason": "EXPIRED", "status_confidence": 0.8}, False),
        ({"status": "CONFIRMED", "status_confidence": 1.0}, True),
        ({"status": "CANCELLED", "status_reason": "MANUAL", "status_confidence": 1.0}, True),
    ],
)
def test_timeline_marks_inferred_and_superseded_expiries(
    client: TestClient, db: sa.Engine, row: dict[str, Any], superseded: bool
) -> None:
    def event(n: int, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "source": "alphapulse" if payload.get("inferred") else "tradingview",
            "event_type": kind, "signal_id": "BTCUSD:x", "trade_id": "x", "symbol": "BTCUSD",
            "event_time": T0 + timedelta(hours=n), "received_at": T0, "payload": payload,
            "idempotency_key": f"k{n}",
        }  # fmt: skip

    with db.begin() as connection:
        connection.execute(sa.insert(signals), _signal("BTCUSD:x", **row))
        connection.execute(
            sa.insert(signal_events),
            [
                event(0, "SIGNAL_CREATED", {"direction": "LONG"}),
                event(12, "CANCELLED", {"reason": "EXPIRED", "inferred": True}),
                event(13, "CANCELLED", {"reason": "MANUAL"}),
            ],
        )
    events = client.get("/signals/BTCUSD:x").json()["events"]
    assert [(e["event_type"], e["inferred"], e["superseded"]) for e in events] == [
        ("SIGNAL_CREATED", False, False),
        ("CANCELLED", True, superseded),
        ("CANCELLED", False, False),
    ]


def test_page_and_docs_load_nothing_from_another_host(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>AlphaPulse Desk</title>" in page.text
    docs = client.get("/docs")
    assert docs.status_code == 200
    for html in (page.text, docs.text):
        assert "://" not in html  # every script, style and icon is the app's own
        for url in re.findall(r"""(?:src|href)=["']([^"'#]+)["']""", html):
            if url.startswith("data:"):
                continue
            assert url.startswith("/"), url
            assert client.get(url).status_code == 200, url
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN
    assert client.get("/openapi.json").status_code == 200


def test_every_vendored_library_carries_its_licence() -> None:
    vendor = STATIC_DIR / "vendor"
    libraries = sorted(p.name for p in vendor.iterdir() if p.is_dir())
    assert libraries == ["lightweight-charts", "swagger-ui"]
    for name in libraries:
        assert (vendor / name / "LICENSE").read_text().lstrip().startswith("Apache License")
    pins = (vendor / "VERSIONS.md").read_text()
    assert "lightweight-charts@5.2.1" in pins and "swagger-ui-dist@5.35.0" in pins
