"""``alphapulse serve`` and ``alphapulse replay-webhooks`` (SPEC §12)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from alphapulse_dagster.clock import utcnow
from alphapulse_dagster.db.engine import database_url, make_engine, redacted

WEBHOOK_PATH = "/webhooks/tradingview"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from alphapulse_dagster.api import ApiSettings, create_app

    # The group-commit writer thread releases the GIL on every database round trip; with
    # the default 5 ms switch interval it then waits behind the busy event loop for each
    # of them (a convoy that showed up as 100-300 ms p99). 0.5 ms keeps it moving.
    sys.setswitchinterval(0.0005)

    try:
        settings = ApiSettings.from_env()
    except ValueError as exc:
        print(f"alphapulse serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        log_level="info",
        timeout_graceful_shutdown=5,
        # forwarded headers only from ALPHAPULSE_TRUSTED_PROXIES (none ⇒ uvicorn's proxy
        # handling is off); connection cap and keep-alive timeout
        **settings.uvicorn_options(),
    )
    return 0


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.strip()


def _stream(path: Path, shift: bool) -> tuple[list[tuple[int, bytes]], str]:
    """The file's numbered lines, moved to the present with ``--shift-to-now``; and a note
    saying how far each symbol moved."""
    lines = list(_lines(path))
    if not shift:
        return lines, ""
    from alphapulse_dagster.webhooks.replay import shift_to_now

    shifted = shift_to_now([body for _, body in lines], utcnow())
    moved = ", ".join(f"{s} +{d} days" for s, d in sorted(shifted.days_by_symbol.items()))
    numbers = [number for number, _ in lines]
    return list(zip(numbers, shifted.bodies, strict=True)), f" (shifted to now: {moved})"


def webhook_url(url: str) -> str:
    """``http://host:8000`` → ``http://host:8000/webhooks/tradingview``; a full endpoint
    URL is kept."""
    return url.rstrip("/") + WEBHOOK_PATH if urlsplit(url).path in ("", "/") else url


def _replay_http(lines: list[tuple[int, bytes]], url: str) -> Counter[str]:
    import httpx

    counts: Counter[str] = Counter()
    target = webhook_url(url)
    with httpx.Client(timeout=10.0) as client:
        for number, body in tqdm(lines, desc="webhooks", unit="event"):
            try:
                response = client.post(
                    target, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                print(f"line {number}: {type(exc).__name__}: {exc}", file=sys.stderr)
                counts["failed"] += 1
                continue
            if response.status_code == 200:
                counts[response.json().get("status", "accepted")] += 1
            else:
                counts[f"http_{response.status_code}"] += 1
                print(f"line {number}: {response.status_code} {response.text}", file=sys.stderr)
    return counts


def _replay_database(lines: list[tuple[int, bytes]], url: str | None, source: str) -> Counter[str]:
    from alphapulse_dagster.webhooks.ingest import ingest_body

    counts: Counter[str] = Counter()
    engine = make_engine(database_url(url))
    try:
        with engine.begin() as connection:
            for number, body in tqdm(lines, desc="webhooks", unit="event"):
                result = ingest_body(connection, body, now=utcnow(), source_address=source)
                if result.appended is not None:
                    counts["duplicate" if result.appended.duplicate else "accepted"] += 1
                elif result.rejection is not None:
                    counts[f"rejected_{result.rejection.status_code}"] += 1
                    print(f"line {number}: {result.rejection.reason}", file=sys.stderr)
    finally:
        engine.dispose()
    return counts


def _replay(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    lines, shift_note = _stream(path, args.shift_to_now)
    if args.url:
        counts = _replay_http(lines, args.url)
        target = webhook_url(args.url)
    else:
        counts = _replay_database(lines, args.database_url, f"replay:{path.name}"[:64])
        target = redacted(database_url(args.database_url))
    summary = ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))
    print(f"replayed {path} into {target}{shift_note}: {summary or 'nothing'}")
    return 0 if set(counts) <= {"accepted", "duplicate"} else 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser(
        "serve",
        help="run the webhook receiver and read API (uvicorn)",
        description="Serve POST /webhooks/tradingview and the read API; OpenAPI at /docs. "
        "Reads ALPHAPULSE_DATABASE_URL, ALPHAPULSE_WEBHOOK_SECRET, ALPHAPULSE_API_TOKEN, "
        "ALPHAPULSE_WEBHOOK_ALLOWED_IPS, ALPHAPULSE_TRUSTED_PROXIES, ALPHAPULSE_SPOOL_PATH, "
        "ALPHAPULSE_MAX_FUTURE_SECONDS, ALPHAPULSE_BODY_TIMEOUT_SECONDS, "
        "ALPHAPULSE_MAX_CONNECTIONS, ALPHAPULSE_KEEP_ALIVE_SECONDS.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(handler=_serve)

    replay = subparsers.add_parser(
        "replay-webhooks",
        help="post a recorded webhook stream (JSONL) to a server or straight into the database",
        description="Each line of FILE is one webhook body. With --url the lines are posted "
        "to a running server; without, they go straight into the database through the same "
        "validation (the shared secret authenticates HTTP senders and is not checked here). "
        "Exit 1 when any line was refused.",
    )
    replay.add_argument("file", metavar="FILE.jsonl")
    replay.add_argument("--url", help="server base URL or webhook URL, e.g. http://127.0.0.1:8000")
    replay.add_argument("--database-url", help="default: ALPHAPULSE_DATABASE_URL")
    replay.add_argument(
        "--shift-to-now",
        action="store_true",
        help="move each symbol's events by whole days so its last event is within the past "
        "24 hours (trade ids too): a historical sample then shows in the health window",
    )
    replay.set_defaults(handler=_replay)
