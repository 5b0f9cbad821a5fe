"""``alphapulse db upgrade`` — create or upgrade the app database schema."""

from __future__ import annotations

import argparse

from alphapulse_dagster.db.engine import database_url, redacted
from alphapulse_dagster.db.migrate import current_revision, upgrade


def _upgrade(args: argparse.Namespace) -> int:
    url = database_url(args.url)
    upgrade(url, args.revision)
    print(f"database {redacted(url)} at revision {current_revision(url)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = subparsers.add_parser("db", help="database schema commands")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    up = db_sub.add_parser(
        "upgrade",
        help="create or upgrade the schema (ALPHAPULSE_DATABASE_URL, default embedded SQLite)",
    )
    up.add_argument("--url", help="database URL (default: ALPHAPULSE_DATABASE_URL)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(handler=_upgrade)
