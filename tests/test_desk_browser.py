"""The desk's screen in a real browser (Debian's chromium under Playwright) against a real
``alphapulse serve`` on Postgres holding the replayed sample stream: what a person sees
equals what the API says. Never skipped under CI=true (``.ci/run`` installs chromium)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import IN_CI, _scratch_pg_database
from tests.desk_support import CHROMIUM, LATE_SIGNAL, NO_CANDLES_SIGNAL, chromium, load_sample_desk
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = "desk-token-7f3a"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or _playwright_missing():
        message = f"chromium ({CHROMIUM}) and the playwright package are needed"
        if IN_CI:
            pytest.fail(f"CI=true and {message}: .ci/run installs them", pytrace=False)
        pytest.skip(message)
    with chromium() as launched:
        yield launched


def _playwright_missing() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.fixture(scope="module")
def desk_env(
    pg_admin_engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("desk")
    with _scratch_pg_database(pg_admin_engine, migrated=False) as url:
        yield {**load_sample_desk(url, work), "ALPHAPULSE_TEST_WORK": str(work)}


@pytest.fixture(scope="module")
def server(desk_env: dict[str, str]) -> Iterator[LiveServer]:
    work = Path(desk_env["ALPHAPULSE_TEST_WORK"])
    live = LiveServer(desk_env, work / "serve.log").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def token_server(desk_env: dict[str, str]) -> Iterator[LiveServer]:
    work = Path(desk_env["ALPHAPULSE_TEST_WORK"])
    env = {**desk_env, "ALPHAPULSE_API_TOKEN": TOKEN, "ALPHAPULSE_SPOOL_PATH": str(work / "s2")}
    live = LiveServer(env, work / "serve-token.log").start()
    yield live
    live.stop()


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def _get(server: LiveServer, path: str, **params: Any) -> Any:
    response = httpx.get(server.url + path, params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def _row_ids(page: Any) -> list[str]:
    return [str(x) for x in page.locator("#signals-body tr[data-signal-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.signalId)"
    )]  # fmt: skip


def _wait_rows(page: Any, expected: list[str]) -> None:
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('#signals-body tr[data-signal-id]')]"
        ".map(r => r.dataset.signalId)) === JSON.stringify(ids)",
        arg=expected,
        timeout=10_000,
    )


def test_health_numbers_equal_get_health(page: Any, server: LiveServer) -> None:
    health = _get(server, "/health")
    assert health["signals"] == 12 and health["total_gaps"] > 0  # the replayed 2019 day
    page.goto(server.url + "/#/health")
    page.wait_for_selector("[data-kpi=health_score]")
    shown = {
        key: page.locator(f"[data-kpi={key}] .value").inner_text()
        for key in ("health_score", "signal_coverage", "data_confidence", "signals",
                    "total_gaps", "manual_intervention")
    }  # fmt: skip
    assert shown == {
        "health_score": f"{health['health_score']:.2f}",
        "signal_coverage": f"{health['signal_coverage'] * 100:.2f}%",
        "data_confidence": f"{health['data_confidence'] * 100:.2f}%",
        "signals": str(health["signals"]),
        "total_gaps": str(health["total_gaps"]),
        "manual_intervention": str(health["manual_intervention"]),
    }
    gap_rows = page.locator("#gap-table tr[data-gap]").evaluate_all(
        "rows => rows.map(r => [r.dataset.gap, +r.cells[2].innerText])"
    )
    assert {gap: n for gap, n in gap_rows} == {
        gap: n for gap, n in health["gap_breakdown"].items() if n
    }
    # the attention list: every signal with an unfillable gap, each linking to its page
    attention = _get(server, "/health/gaps")["attention"]
    assert sum(len(item["gap_types"]) for item in attention) == health["manual_intervention"]
    links = page.locator("#attention-table a").evaluate_all("as => as.map(a => a.innerText)")
    assert links == [item["signal_id"] for item in attention] and links
    page.locator("#attention-table a").first.click()
    page.wait_for_selector("#timeline li")
    assert page.locator("h1").inner_text() == attention[0]["symbol"]


def test_table_rows_equal_get_signals_and_filters_narrow_them(
    page: Any, server: LiveServer
) -> None:
    everything = [i["signal_id"] for i in _get(server, "/signals", limit=50)["items"]]
    page.goto(server.url + "/#/signals")
    _wait_rows(page, everything)
    assert len(everything) == 15  # 13 sample signals + the two stories of desk_support

    page.select_option("select[name=status]", "CLOSED")
    closed = [i["signal_id"] for i in _get(server, "/signals", limit=50, status="CLOSED")["items"]]
    _wait_rows(page, closed)
    assert 0 < len(closed) < len(everything)
    statuses = page.locator("#signals-body td[data-col=status] .badge").all_inner_texts()
    assert set(statuses) == {"CLOSED"}

    page.fill("input[name=symbol]", "eurusd")
    page.press("input[name=symbol]", "Enter")
    both = _get(server, "/signals", limit=50, status="CLOSED", symbol="EURUSD")["items"]
    _wait_rows(page, [i["signal_id"] for i in both])
    assert 0 < len(both) < len(closed)
    assert set(page.locator("#signals-body td[data-col=symbol]").all_inner_texts()) == {"EURUSD"}


def test_all_signals_pages_by_keyset(page: Any, server: LiveServer) -> None:
    first = _get(server, "/signals", limit=50)
    assert first["next_cursor"] is None  # the sample fits one page of 50
    page.goto(server.url + "/#/signals")
    _wait_rows(page, [i["signal_id"] for i in first["items"]])
    assert page.locator("#page-next").is_disabled() and page.locator("#page-prev").is_disabled()
    # the page polls: a request for the same page goes out again without a reload
    with page.expect_request(lambda r: urlsplit(r.url).path == "/signals", timeout=12_000):
        pass


def test_signal_timeline_and_chart_markers(page: Any, server: LiveServer) -> None:
    closed = _get(server, "/signals", limit=50, status="CLOSED", symbol="BTCUSD")["items"]
    signal_id = closed[0]["signal_id"]
    detail = _get(server, "/signals/" + quote(signal_id, safe=""))
    page.goto(server.url + "/#/signal/" + quote(signal_id, safe=""))
    page.wait_for_function("window.__desk.signalChart && window.__desk.signalChart.candles > 0")
    order = page.locator("#timeline li").evaluate_all("li => li.map(x => +x.dataset.eventId)")
    assert order == [e["event_id"] for e in detail["events"]]
    # the chart's own price lines, where the chart library draws them
    lines = page.evaluate(
        """() => { const c = window.__desk.signalChart; const h = c.chart.paneSize().height;
        return c.series.priceLines().map(l => { const o = l.options();
          const y = c.series.priceToCoordinate(o.price);
          return [o.title, o.price, y !== null && y >= 0 && y <= h]; }); }"""
    )
    drawn = {title: (price, visible) for title, price, visible in lines}
    assert drawn["Entry"] == (detail["entry_price"], True)
    assert drawn["Stop"] == (detail["stop_loss"], True)
    assert [drawn[f"TP{n + 1}"][0] for n in range(len(detail["targets"]))] == detail["targets"]
    assert drawn["Exit"][0] == detail["exit_price"]
    markers = page.evaluate("() => window.__desk.signalChart.markers")
    fill = next(m for m in markers if m["text"].startswith("FILL"))
    assert fill["price"] == detail["entry_price"]
    assert any(m["text"].startswith("EXIT") and m["price"] == detail["exit_price"] for m in markers)
    provenance = page.locator("#provenance tr[data-field]").evaluate_all(
        "rows => rows.map(r => r.dataset.field)"
    )
    assert provenance == sorted(detail["field_provenance"])


def test_a_superseded_inferred_expiry_is_marked(page: Any, server: LiveServer) -> None:
    detail = _get(server, "/signals/" + quote(LATE_SIGNAL, safe=""))
    assert detail["status"] == "CONFIRMED"
    page.goto(server.url + "/#/signal/" + quote(LATE_SIGNAL, safe=""))
    page.wait_for_selector("#timeline li")
    items = page.locator("#timeline li").evaluate_all(
        "li => li.map(x => [x.dataset.eventType, x.className.trim()])"
    )
    assert items == [
        ["SIGNAL_CREATED", "explicit"],
        ["CANCELLED", "inferred superseded"],
        ["ENTRY", "explicit"],
    ]
    assert "superseded" in page.locator("#timeline li.superseded").inner_text()


def test_no_candles_says_so(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/#/signal/" + quote(NO_CANDLES_SIGNAL, safe=""))
    message = page.locator("#no-candles")
    message.wait_for()
    assert re.match(r"No candles for NQ1! 1h between ", message.inner_text())
    assert page.locator("#signal-chart canvas").count() == 0


def test_strategy_view_shows_mtf_metrics_and_trades(page: Any, server: LiveServer) -> None:
    trades = _get(server, "/analytics/trades")
    mtf = _get(server, "/metrics/mtf")
    page.goto(server.url + "/#/strategies")
    page.wait_for_selector("#mtf-metrics")
    assert page.locator("[data-kpi=total_signals] .value").inner_text() == str(mtf["total_signals"])
    scattered = [t for t in trades["trades"] if t["mfe_r"] is not None and t["mae_r"] is not None]
    assert len(scattered) == 10  # the sample's closed BTCUSD and EURUSD trades
    assert page.locator("#mfe-mae circle").count() == len(scattered)
    assert page.locator("#equity polyline").count() == 1
    if _get_status(server, "/analytics/strategies") == 404:
        assert page.locator("#no-outcomes").is_visible()


def _get_status(server: LiveServer, path: str) -> int:
    return httpx.get(server.url + path, timeout=10).status_code


STRATEGIES = {  # the pinned GET /analytics/strategies shape (SPEC §16)
    "groups": [
        {"key": "FIBONACCI_618", "n": 42, "fill_rate": 0.7, "win_rate": 0.55,
         "expectancy_r": 0.31, "expectancy_ci": [0.08, 0.52], "profit_factor": 1.6,
         "max_drawdown_r": 4.2, "mean_mfe_r": 1.4, "mean_mae_r": 0.6,
         "entry_improvement_bps": 21.5, "flag": None},
        {"key": "MARKET_ENTRY", "n": 12, "fill_rate": 1.0, "win_rate": 0.5,
         "expectancy_r": -0.1, "expectancy_ci": [-0.7, 0.4], "profit_factor": 0.9,
         "max_drawdown_r": 3.0, "mean_mfe_r": 1.1, "mean_mae_r": 0.8,
         "entry_improvement_bps": 0.0, "flag": "small_sample"},
    ],
    "paired": {"n": 40, "delta_r": 0.22, "delta_ci": [0.05, 0.41], "missed_r": 3.5},
}  # fmt: skip


def test_strategy_evaluation_renders_the_pinned_shape(page: Any, server: LiveServer) -> None:
    """Until the outcomes engineer's endpoint lands, its pinned §16 shape is fed to the page
    by the browser; the page must show a group switcher, flagged groups as such, the paired
    comparison and the intervals."""
    asked: list[str] = []

    def fulfil(route: Any) -> None:
        asked.append(route.request.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(STRATEGIES))

    page.route("**/analytics/strategies*", fulfil)
    page.goto(server.url + "/#/strategies")
    page.wait_for_selector("#groups tr[data-group]")
    flagged = page.locator("#groups tr.flagged").evaluate_all("r => r.map(x => x.dataset.group)")
    assert flagged == ["MARKET_ENTRY"]
    assert "small_sample" in page.locator("#groups tr.flagged").inner_text()
    assert page.locator("#forest circle").count() == 2
    assert page.locator("[data-kpi=delta_r] .value").inner_text() == "+0.22R"
    page.select_option("#group-by", "symbol")
    page.wait_for_function("() => window.__desk.rendered === 'strategies'")
    page.wait_for_timeout(300)
    assert asked[-1].endswith("group_by=symbol")


def test_with_a_token_no_data_appears_without_it(browser: Any, token_server: LiveServer) -> None:
    assert httpx.get(token_server.url + "/health").status_code == 401
    context = browser.new_context()
    page = context.new_page()
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    page.goto(token_server.url + "/#/signals")
    dialog = page.locator("#token-dialog")
    dialog.wait_for(state="visible")
    page.wait_for_timeout(500)
    assert page.locator("#signals-body tr[data-signal-id]").count() == 0
    assert page.locator("[data-kpi]").count() == 0
    page.fill("#token-input", "wrong")
    page.press("#token-input", "Enter")
    page.locator("#token-error").wait_for(state="visible")
    assert page.locator("#signals-body tr[data-signal-id]").count() == 0
    page.fill("#token-input", TOKEN)
    page.press("#token-input", "Enter")
    page.wait_for_selector("#signals-body tr[data-signal-id]")
    # asked once: the next view loads without the dialog
    page.goto(token_server.url + "/#/health")
    page.wait_for_selector("[data-kpi=health_score]")
    assert not dialog.is_visible()
    assert all(TOKEN not in url for url, _ in sent)
    api_calls = [(u, a) for u, a in sent if urlsplit(u).path in ("/health", "/signals")]
    assert api_calls and api_calls[-1][1] == f"Bearer {TOKEN}"
    context.close()


def test_docs_render_offline_and_the_page_stays_under_1_mb(
    browser: Any, server: LiveServer
) -> None:
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", only_loopback)
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    assert page.locator(".opblock").count() >= 10
    sizes: list[int] = []
    page.on("response", lambda r: sizes.append(len(r.body())) if r.ok else None)
    page.goto(server.url + "/#/signals")
    page.wait_for_selector("#signals-body tr[data-signal-id]")
    assert outside == []
    assert 0 < sum(sizes) <= 1_000_000, sum(sizes)
    context.close()
