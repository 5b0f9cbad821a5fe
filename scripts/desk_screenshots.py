"""Regenerate the README's pictures of the desk: ``make screenshots``.

Builds a scratch SQLite desk the way a newcomer would (``alphapulse demo``: sample candles,
the MTF assets, the sample webhooks, one sync), adds the two stories of
``tests/desk_support.py`` (a late ENTRY superseding an inferred expiry, a signal without
candles) with two more syncs later that day, serves it with ``alphapulse serve`` and saves
one PNG per view under ``docs/`` with Debian's chromium (Playwright, no browser download).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.desk_support import (  # noqa: E402
    LATE_CREATED,
    LATE_ENTRY,
    LATE_SIGNAL,
    NO_CANDLES,
    _jsonl,
    alphapulse,
    chromium,
)
from tests.live_server import LiveServer  # noqa: E402

DOCS = REPO_ROOT / "docs"
CHART_SIGNAL = "BTCUSD:20190614_120000_BULLISH"  # a LONG that ran to its last target
VIEWS = (
    ("desk-health.png", "#/health"),
    ("desk-all-signals.png", "#/signals"),
    ("desk-signal.png", "#/signal/" + quote(CHART_SIGNAL, safe="")),
    ("desk-signal-superseded-expiry.png", "#/signal/" + quote(LATE_SIGNAL, safe="")),
    ("desk-strategy-evaluation.png", "#/strategies"),
)


def build(work: Path) -> dict[str, str]:
    url = f"sqlite:///{work / 'desk.db'}"
    env = {"ALPHAPULSE_DATABASE_URL": url, "ALPHAPULSE_SPOOL_PATH": str(work / "spool.jsonl")}
    print("alphapulse demo …", flush=True)
    alphapulse("demo", "--url", url, env=env)
    first = _jsonl(work / "a.jsonl", [LATE_CREATED, *NO_CANDLES])
    alphapulse("replay-webhooks", str(first), env=env)
    alphapulse("sync", env={**env, "ALPHAPULSE_FROZEN_NOW": "2019-06-15T06:00:00+00:00"})
    alphapulse("replay-webhooks", str(_jsonl(work / "b.jsonl", [LATE_ENTRY])), env=env)
    now = "2019-06-15T12:00:00+00:00"
    alphapulse("sync", env={**env, "ALPHAPULSE_FROZEN_NOW": now})
    evaluate_outcomes(url, datetime.fromisoformat(now))
    return {**env, "ALPHAPULSE_FROZEN_NOW": now}


def evaluate_outcomes(url: str, now: datetime) -> None:
    """What the signal_outcomes asset does for the sample's days (it is not part of the
    demo): outcomes from candles for every signal, so the strategy view has figures."""
    from alphapulse_dagster.analytics.outcome_store import compute_outcomes, write_outcomes
    from alphapulse_dagster.config import load_config
    from alphapulse_dagster.db.engine import make_engine
    from alphapulse_dagster.signals.mtf_run import trade_rule

    engine = make_engine(url)
    try:
        since, until = datetime(2017, 1, 1, tzinfo=UTC), now
        rule = trade_rule(load_config())
        write_outcomes(engine, compute_outcomes(engine, since, until, rule, now), since, until)
    finally:
        engine.dispose()


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="desk_screenshots_") as folder:
        work = Path(folder)
        server = LiveServer(build(work), work / "serve.log").start()
        try:
            with chromium() as browser:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                for name, view in VIEWS:
                    page.goto(server.url + "/" + view)
                    page.wait_for_function("() => window.__desk && window.__desk.rendered")
                    page.wait_for_load_state("networkidle")
                    page.wait_for_timeout(400)  # the charts' first paint
                    page.screenshot(path=str(DOCS / name), full_page=True)
                    page.evaluate("() => { window.__desk.rendered = null; }")
                    print(f"docs/{name}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
