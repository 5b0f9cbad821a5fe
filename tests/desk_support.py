"""The desk's screen in a real browser: a database holding the replayed sample stream, and
Debian's chromium driven by Playwright (no browser download: ``executable_path``).

Used by the browser tests, ``scripts/desk_screenshots.py`` and ``bench/bench_desk.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "data" / "sample_webhooks.jsonl"
CHROMIUM = os.environ.get("ALPHAPULSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# the sample is historical: the health window and the expiries are judged at its end
FROZEN_NOW = "2019-06-15T00:00:00+00:00"

# Two stories the sample does not tell, replayed after it:
# a signal whose inferred expiry a late ENTRY supersedes (created 06-13 10:00 on 1h, so it
# expires after 12 bars at 22:00; the ENTRY comes at 06-14 00:30, after the first sync);
LATE_TRADE = "20190613_100000_BULLISH"
LATE_SIGNAL = f"BTCUSD:{LATE_TRADE}"
LATE_CREATED = {
    "secret": "demo-secret", "event": "SIGNAL_CREATED", "trade_id": LATE_TRADE,
    "symbol": "BTCUSD", "time": "2019-06-13T10:00:00Z", "timeframe": "60",
    "direction": "BULLISH", "htf_alignment": {"240": "BULLISH", "1D": "NEUTRAL"},
    "session": "LONDON", "market_state": "TRENDING",
}  # fmt: skip
LATE_ENTRY = {
    "secret": "demo-secret", "event": "ENTRY", "trade_id": LATE_TRADE, "symbol": "BTCUSD",
    "time": "2019-06-14T00:30:00Z", "timeframe": "60", "direction": "LONG",
    "entry_price": 8180.0, "stop_loss": 8100.0, "targets": [8260.0, 8340.0],
}  # fmt: skip
# and a signal on an instrument that has no candles.
NO_CANDLES_SIGNAL = "NQ1!:20190614_100000_BULLISH"
NO_CANDLES = [
    {
        "secret": "demo-secret", "event": "SIGNAL_CREATED", "trade_id": "20190614_100000_BULLISH",
        "symbol": "NQ1!", "time": "2019-06-14T10:00:00Z", "timeframe": "60",
        "direction": "BULLISH", "htf_alignment": {"240": "BULLISH"}, "session": "NEW_YORK",
        "market_state": "TRENDING",
    },
    {
        "secret": "demo-secret", "event": "ENTRY", "trade_id": "20190614_100000_BULLISH",
        "symbol": "NQ1!", "time": "2019-06-14T10:05:00Z", "timeframe": "60", "direction": "LONG",
        "entry_price": 7420.25, "stop_loss": 7395.0, "targets": [7460.0],
    },
]  # fmt: skip


def alphapulse(*args: str, env: dict[str, str]) -> str:
    """Run the real CLI in a subprocess; raises with its output when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "alphapulse_dagster.cli", *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"alphapulse {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def load_sample_desk(database_url: str, work: Path) -> dict[str, str]:
    """Migrate, import the bundled candles, replay the sample stream (plus the two stories
    above) and sync twice, as an operator would; returns the environment to serve it."""
    env = {
        "ALPHAPULSE_DATABASE_URL": database_url,
        "ALPHAPULSE_FROZEN_NOW": FROZEN_NOW,
        "ALPHAPULSE_SPOOL_PATH": str(work / "spool.jsonl"),
        "ALPHAPULSE_REDIS_URL": "",
    }
    alphapulse("db", "upgrade", env=env)
    alphapulse("import-candles", str(REPO_ROOT / "data" / "sample"), "--quiet", env=env)
    first = _jsonl(work / "first.jsonl", [LATE_CREATED, *NO_CANDLES])
    for stream in (SAMPLE, first):
        alphapulse("replay-webhooks", str(stream), env=env)
    alphapulse("sync", env=env)  # appends the inferred expiry of LATE_SIGNAL
    alphapulse("replay-webhooks", str(_jsonl(work / "late.jsonl", [LATE_ENTRY])), env=env)
    alphapulse("sync", env=env)  # the late ENTRY re-opens it
    return env


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian chromium under Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
