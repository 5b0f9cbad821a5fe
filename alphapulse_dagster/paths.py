"""Where bundled files live, in a checkout and in an installed wheel.

The wheel carries ``config/`` and ``data/sample/`` of the repository as
``alphapulse_dagster/bundled/{config,sample}``; a checkout (or an editable install) reads
them from the repository root.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

_CHECKOUT_LAYOUT = {"config": REPO_ROOT / "config", "sample": REPO_ROOT / "data" / "sample"}


def bundled_dir(name: str) -> Path:
    """``name`` is ``config`` or ``sample``."""
    installed = PACKAGE_DIR / "bundled" / name
    if installed.is_dir():
        return installed
    return _CHECKOUT_LAYOUT[name]


def sample_market_data_dir() -> Path:
    """The bundled CSV market data folder (``{SYMBOL}_{timeframe}.csv``)."""
    return bundled_dir("sample")


def sample_webhooks_file() -> Path:
    """The bundled day of TradingView webhooks (``data/sample_webhooks.jsonl``), replayed by
    ``make demo`` and the tests."""
    installed = PACKAGE_DIR / "bundled" / "sample_webhooks.jsonl"
    if installed.is_file():
        return installed
    return REPO_ROOT / "data" / "sample_webhooks.jsonl"
