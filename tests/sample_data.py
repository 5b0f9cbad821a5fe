"""The repository's bundled sample market data (``data/sample/``), found from this file so
the tests run from any checkout."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
