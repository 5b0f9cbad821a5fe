"""The ``alphapulse demo`` sub-command; ``demo.run`` (and Dagster) load only when it runs."""

from __future__ import annotations

import argparse

DEMO_URL = "sqlite:///.alphapulse/demo.db"


def _run(args: argparse.Namespace) -> int:
    from demo.run import main

    return main(args)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="headless demo: sample candles -> MTF assets -> sample webhooks -> sync -> health",
        description="Materialise the MTF assets over a week of each sample market, replay "
        "the sample webhooks, run the hybrid sync and print the health report, all on a "
        "fresh database, with the clock at the end of the sample day (2019-06-15 00:00 UTC).",
    )
    parser.add_argument("--url", help=f"database URL (default {DEMO_URL}, recreated)")
    parser.set_defaults(handler=_run)
