"""A production-shaped Dagster stack for tests and ``bench/bench_e2e_latency.py``.

- :func:`prod_dagster_home`: a temporary ``DAGSTER_HOME`` holding the shipped
  ``deploy/dagster.yaml`` and the ``DAGSTER_PG_*`` environment pointing at a Postgres
  database (the instance storage).
- :class:`DaemonStack`: ``dagster api grpc`` (the code server, behind a ``workspace.yaml``),
  ``dagster-daemon run`` and ``alphapulse serve``, as separate processes on loopback, with
  the hybrid-sync sensor and schedule turned on through the instance.

Every process started here is stopped by :meth:`DaemonStack.stop` (by its own pid).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.live_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOY_YAML = REPO_ROOT / "deploy" / "dagster.yaml"


def dagster_pg_env(admin_url: str, database: str) -> dict[str, str]:
    """``DAGSTER_PG_*`` for ``deploy/dagster.yaml`` from an SQLAlchemy URL's server."""
    url = sa.engine.make_url(admin_url)
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": database,
    }


def prod_dagster_home(home: Path, admin_url: str, database: str) -> dict[str, str]:
    """Copy the shipped ``deploy/dagster.yaml`` into ``home``; return the environment
    (``DAGSTER_HOME`` + ``DAGSTER_PG_*``) a Dagster process needs to use it."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    return {"DAGSTER_HOME": str(home), **dagster_pg_env(admin_url, database)}


@contextmanager
def scratch_databases(admin_url: str, *prefixes: str) -> Iterator[list[str]]:
    """Fresh empty Postgres databases (one per prefix), dropped afterwards."""
    import uuid

    # pre-ping: the drop comes minutes later, and a Postgres restart in between (another
    # suite's outage drill) would otherwise leave the databases behind
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    names = [f"{prefix}_{uuid.uuid4().hex[:10]}" for prefix in prefixes]
    try:
        with admin.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield names
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def database_url(admin_url: str, name: str) -> str:
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


WORKSPACE = """load_from:
  - grpc_server:
      host: 127.0.0.1
      port: {port}
      location_name: alphapulse
"""


class DaemonStack:
    """Code server + daemon + API against a Postgres-backed instance in ``home``."""

    def __init__(self, workdir: Path, admin_url: str, instance_db: str, app_url: str) -> None:
        self.workdir = workdir
        self.home = workdir / "dagster_home"
        self.app_url = app_url
        self.grpc_port = free_port()
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.workspace = workdir / "workspace.yaml"
        self.workspace.write_text(WORKSPACE.format(port=self.grpc_port))
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            **prod_dagster_home(self.home, admin_url, instance_db),
            "ALPHAPULSE_DATABASE_URL": app_url,
            "ALPHAPULSE_CONFIG_DIR": str(REPO_ROOT / "config"),
            "ALPHAPULSE_MARKET_DATA_DIR": "",
            "ALPHAPULSE_REDIS_URL": "",
            "ALPHAPULSE_SPOOL_PATH": str(workdir / "spool.jsonl"),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: run workers are stopped too
        )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _wait(self, name: str, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout}s:\n{self.log_tail(name)}")

    def start(self, timeout: float = 60.0) -> DaemonStack:
        """Code server first (the daemon and the CLI talk to it), then the API and the
        daemon; returns once all three answer."""
        self._spawn(
            "code_server",
            [
                str(BIN / "dagster"),
                "api",
                "grpc",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.grpc_port),
                "-m",
                "alphapulse_dagster.definitions",
                "--location-name",
                "alphapulse",
            ],
        )
        self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "alphapulse_dagster.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
            ],
        )
        self._wait("code_server", self._grpc_ready, timeout)
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])
        self._wait(
            "api", lambda: httpx.get(f"{self.api}/healthz", timeout=1).status_code == 200, timeout
        )
        return self

    def _grpc_ready(self) -> bool:
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=self.grpc_port, host="127.0.0.1")
        return client.ping("ok") is not None

    def dagster_cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "dagster"), *args, "-w", str(self.workspace)],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def turn_on(self, sensors: tuple[str, ...], schedules: tuple[str, ...]) -> None:
        """``dagster sensor start`` / ``dagster schedule start`` against the workspace —
        exactly what an operator would type."""
        for name in sensors:
            done = self.dagster_cli("sensor", "start", name)
            if done.returncode != 0:
                raise RuntimeError(f"sensor start {name}: {done.stdout}{done.stderr}")
        for name in schedules:
            done = self.dagster_cli("schedule", "start", name)
            if done.returncode != 0:
                raise RuntimeError(f"schedule start {name}: {done.stdout}{done.stderr}")

    def stop(self) -> None:
        """SIGTERM each process group we started (daemon first), then SIGKILL leftovers."""
        for name in ("daemon", "api", "code_server"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # run workers the daemon launched live in the daemon's process group
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@contextmanager
def instance_env(env: dict[str, str]) -> Iterator[None]:
    """Temporarily export the stack's DAGSTER_* so ``DagsterInstance.get()`` in this process
    opens the same (Postgres) instance as the daemon."""
    keys = [k for k in env if k.startswith("DAGSTER_")]
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_daemon_healthy(stack: DaemonStack, timeout: float = 60.0) -> None:
    """Until the scheduler, sensor and run-queue daemons have all sent heartbeats."""
    import dagster as dg

    wanted = ["SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"]
    deadline = time.monotonic() + timeout
    with instance_env(stack.env), dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            if stack.processes["daemon"].poll() is not None:
                raise RuntimeError(f"daemon exited:\n{stack.log_tail('daemon')}")
            statuses = instance.get_daemon_statuses(wanted)
            if all(s.healthy for s in statuses.values()):
                return
            time.sleep(0.5)
    raise RuntimeError(f"daemons not healthy:\n{stack.log_tail('daemon')}")


def webhook(event: str, trade_id: str, at: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": event,
        "trade_id": trade_id,
        "symbol": "BTCUSDT",
        "time": at,
        "timeframe": "60",
    }
    body.update(extra)
    return body


def reconciled(doc: dict[str, Any]) -> bool:
    """``GET /signals/{id}`` shows the Tier 0 fields the SIGNAL_CREATED carried."""
    provenance = doc.get("field_provenance") or {}
    return (
        bool(doc.get("htf_alignment"))
        and doc.get("confirmation_time") is not None
        and str((provenance.get("htf_alignment") or {}).get("tier")) == "0"
        and str((provenance.get("confirmation_time") or {}).get("tier")) == "0"
    )


def entry_then_created_latency(
    api: str, trade_id: str, timeout: float = 60.0
) -> tuple[float, dict[str, Any]]:
    """POST an ENTRY (the signal's earlier fields unknown), then its SIGNAL_CREATED
    (htf_alignment, session, market_state); seconds from the SIGNAL_CREATED's 200 until
    ``GET /signals/{id}`` shows htf_alignment and confirmation_time with Tier 0 provenance."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    created_at, entry_at = now - timedelta(minutes=30), now - timedelta(minutes=10)
    signal_id = f"BTCUSDT:{trade_id}"
    with httpx.Client(base_url=api, timeout=10) as client:
        first = client.post(
            "/webhooks/tradingview",
            json=webhook(
                "ENTRY",
                trade_id,
                entry_at.isoformat(),
                direction="LONG",
                entry_price=100.0,
                stop_loss=95.0,
            ),
        )
        first.raise_for_status()
        second = client.post(
            "/webhooks/tradingview",
            json=webhook(
                "SIGNAL_CREATED",
                trade_id,
                created_at.isoformat(),
                direction="BULLISH",
                htf_alignment={"4h": "BULLISH", "1d": "NEUTRAL"},
                session="LONDON",
                market_state="TRENDING",
            ),
        )
        second.raise_for_status()
        started = time.monotonic()
        deadline = started + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = client.get(f"/signals/{signal_id}")
            if response.status_code == 200:
                doc = response.json()
                if reconciled(doc):
                    return time.monotonic() - started, doc
            time.sleep(0.1)
    raise TimeoutError(f"{signal_id} not reconciled after {timeout}s: {doc}")


def run_timings(stack: DaemonStack) -> list[dict[str, Any]]:
    """Per run of the instance: trigger, queued → started, launched (RUN_STARTING) →
    started (the run worker's start-up) and started → ended seconds."""
    import dagster as dg

    out = []
    with instance_env(stack.env), dg.DagsterInstance.get() as instance:
        for record in reversed(instance.get_run_records()):
            run = record.dagster_run
            launched = instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.RUN_STARTING
            ).records
            out.append(
                {
                    "run_id": run.run_id[:8],
                    "job": run.job_name,
                    "trigger": run.tags.get(
                        "alphapulse/trigger", run.tags.get("dagster/schedule_name", "")
                    ),
                    "status": run.status.value,
                    "queued_to_start": (record.start_time or 0)
                    - record.create_timestamp.timestamp()
                    if record.start_time
                    else None,
                    "launch_to_start": record.start_time - launched[0].timestamp
                    if record.start_time and launched
                    else None,
                    "run_seconds": (record.end_time - record.start_time)
                    if record.end_time and record.start_time
                    else None,
                }
            )
    return out


def sensor_tick_gaps(stack: DaemonStack, name: str, limit: int = 40) -> list[float]:
    """Seconds between the last ``limit`` ticks of sensor ``name``, oldest first."""
    import dagster as dg

    with instance_env(stack.env), dg.DagsterInstance.get() as instance:
        for state in instance.all_instigator_state():
            if state.instigator_name == name:
                ticks = instance.get_ticks(
                    state.instigator_origin_id, state.selector_id, limit=limit
                )
                times = sorted(tick.timestamp for tick in ticks)
                return [b - a for a, b in zip(times, times[1:], strict=False)]
    return []
