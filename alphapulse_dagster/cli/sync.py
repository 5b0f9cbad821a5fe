"""``alphapulse sync [--incremental] [--rescan]`` (one hybrid-sync cycle, outside Dagster — the
same code path as ``hybrid_sync_job``) and
``alphapulse health [--json]`` (the system health report)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sqlalchemy.exc import DBAPIError

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.config import load_config
from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.sync.health import format_health, health_report
from alphapulse_dagster.sync.sync_cycle import SyncBusy, SyncRequest, run_sync
from alphapulse_dagster.webhooks.spool import Spool, spool_path

# exit status when another sync holds the lock for longer than --wait (EX_TEMPFAIL)
EXIT_BUSY = 75
# exit status when the database went away mid-cycle (EX_UNAVAILABLE): what was committed
# is whole (each chunk of signals is one transaction); the next cycle picks up the rest
EXIT_DATABASE = 69

log = logging.getLogger(__name__)


def _sync(args: argparse.Namespace) -> int:
    config = load_config()
    engine = make_engine()
    try:
        request = SyncRequest(full=not args.incremental, rescan=args.rescan)
        report = run_sync(engine, config, utcnow(), request=request, lock_wait_seconds=args.wait)
    except SyncBusy as exc:
        print(f"alphapulse sync: skipped — {exc}; try again later", file=sys.stderr)
        return EXIT_BUSY
    except DBAPIError as exc:
        log.debug("sync stopped by a database error", exc_info=True)
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(
            f"alphapulse sync: failed — database error ({type(exc.orig or exc).__name__}: "
            f"{reason}); committed work is consistent, run the sync again",
            file=sys.stderr,
        )
        return EXIT_DATABASE
    finally:
        engine.dispose()
    summary = {
        "sync_run_id": report.sync_run_id,
        "seconds": round(report.seconds, 3),
        "signals_projected": report.projection.signals_touched,
        "expired": len(report.expired),
        "signals_scanned": report.gaps.signals_scanned,
        "fields_changed": report.reconcile.fields_changed,
        "gaps_opened": report.gaps.opened,
        "gaps_resolved": report.gaps.resolved,
        "health": report.health.as_api(),
    }
    # the run's one structured summary line, on the log (stderr) whatever the output format
    log.info(json.dumps({"event": "sync_run_summary", **summary}, sort_keys=True))
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"sync {report.sync_run_id}: {report.projection.signals_touched} signals "
            f"projected, {len(report.expired)} expired, "
            f"{report.reconcile.fields_changed} fields filled, {report.gaps.opened} gaps opened, "
            f"{report.gaps.resolved} resolved in {report.seconds:.2f}s\n"
        )
        print(format_health(report.health))
    return 0


def _health(args: argparse.Namespace) -> int:
    config = load_config()
    engine = make_engine()
    try:
        with engine.connect() as conn:
            report = health_report(conn, utcnow(), config.hybrid_sync)
    finally:
        engine.dispose()
    spool = Spool(spool_path()).status()
    if args.json:
        print(json.dumps({**report.as_api(), "webhook_spool": spool}))
    else:
        print(format_health(report))
        print(
            f"Webhook spool: {spool['pending_bytes']} bytes waiting, "
            f"{spool['dead_letters']} dead letters ({spool['dead_letter_file']})"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sync = subparsers.add_parser(
        "sync",
        help="run one hybrid-sync cycle (projection, cancellations, tiers, gaps, health)",
    )
    sync.add_argument(
        "--incremental",
        action="store_true",
        help="only signals with new events and active signals (default: every signal)",
    )
    sync.add_argument(
        "--rescan",
        action="store_true",
        help="also re-detect the gaps of every settled signal (after a gap rule, weight "
        "or kind changed in mtf_config.yaml)",
    )
    sync.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for a running sync to finish (default 30); then exit 75",
    )
    sync.add_argument("--json", action="store_true", help="print a JSON summary")
    sync.set_defaults(handler=_sync)

    health = subparsers.add_parser("health", help="print the signal health report")
    health.add_argument("--json", action="store_true", help="the GET /health JSON shape")
    health.set_defaults(handler=_health)
