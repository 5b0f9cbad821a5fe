"""``alphapulse`` — the operator's command line (SPEC §12).

Each command group lives in its own module with ``register(subparsers)``; this file only
lists them. Every command reads ``ALPHAPULSE_*`` from the environment.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# module name -> registers its sub-commands
COMMAND_MODULES: tuple[str, ...] = (
    "alphapulse_dagster.cli.db",
    "alphapulse_dagster.cli.candles",
    "alphapulse_dagster.cli.api",
    "alphapulse_dagster.cli.sync",
    "alphapulse_dagster.cli.report",
    # the demo drives the Dagster assets, so it lives outside the core (``demo/``); its
    # module here only registers the command and imports the rest when it runs
    "demo.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alphapulse",
        description="AlphaPulse trading-signal desk: database, candles, API, sync, health.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # httpx logs every request at INFO: one line per event of a replay, next to its
        # progress bar
        logging.getLogger("httpx").setLevel(logging.WARNING)
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
