"""What the webhook benchmarks share: a real ``alphapulse serve``, a scratch Postgres
database, and ``wrk`` posting webhooks at the server (``bench_webhooks.py``,
``bench_webhook_outages.py``).

``wrk`` posts one of two bodies: ``valid`` (a unique SPEC §16 SIGNAL_CREATED per request:
thread id + counter in its trade_id and alert_id) or ``flood`` (~4 KB with a wrong secret).
It counts the answers by status and reports p50/p99/max latency; the CPU seconds the
``wrk`` process itself used are measured too, so a result can show whether the load
generator, sharing the machine with the server, was what ran short.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from alphapulse_dagster.db.migrate import upgrade  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "ALPHAPULSE_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SECRET = "bench-secret"

WRK_LUA = r"""
local threads = {}
function setup(thread) thread:set("tid", #threads + 1) table.insert(threads, thread) end
function init(args) statuses = {} counter = 0 tid = wrk.thread:get("tid") end
local padding = string.rep("x", 3900)
function request()
  counter = counter + 1
  local body
  if "__BODY__" == "flood" then
    body = string.format('{"secret":"guess-%d","event":"SIGNAL_CREATED","note":"%s"}',
      counter, padding)
  else
    body = string.format(
      '{"secret":"__SECRET__","event":"SIGNAL_CREATED",' ..
      '"trade_id":"20190614_120000_BULLISH___RUN___%d_%d","symbol":"BTCUSD",' ..
      '"time":"2019-06-14T12:00:00Z","timeframe":"60","direction":"BULLISH",' ..
      '"htf_alignment":{"240":"BULLISH","1D":"NEUTRAL"},"session":"NEW_YORK",' ..
      '"market_state":"TRENDING","alert_id":"__RUN__-%d-%d"}', tid, counter, tid, counter)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "text/plain"}, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  for status, n in pairs(total) do io.write(string.format("STATUS %d %d\n", status, n)) end
  io.write(string.format("P50US %d\nP99US %d\nMAXUS %d\n",
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class LoadResult:
    """One ``wrk`` run. ``statuses``: answers by HTTP status; ``ok``: those with an
    expected status; ``client_cpu``: CPU seconds (user + system) of the ``wrk`` process."""

    duration: float
    statuses: dict[int, int]
    expect: tuple[int, ...]
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status in self.expect)

    @property
    def other(self) -> int:
        """Answers with another status (socket errors not included)."""
        return sum(self.statuses.values()) - self.ok

    @property
    def rps(self) -> float:
        return self.ok / self.duration


@dataclass
class Load:
    """A ``wrk`` run under way (:func:`start_load`); :meth:`result` waits for its end."""

    process: subprocess.Popen[str]
    duration: float
    expect: tuple[int, ...]
    script: Path
    _cpu_before: float = field(default=0.0)

    def result(self) -> LoadResult:
        output, _ = self.process.communicate()
        # wrk is a child of this process: once reaped, its CPU time is in RUSAGE_CHILDREN
        cpu = _children_cpu() - self._cpu_before
        self.script.unlink(missing_ok=True)

        def number(pattern: str) -> float:
            found = re.search(pattern, output)
            return float(found.group(1)) if found else 0.0

        return LoadResult(
            duration=self.duration,
            statuses={int(s): int(n) for s, n in re.findall(r"STATUS (\d+) (\d+)", output)},
            expect=self.expect,
            socket_errors=sum(
                int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
            ),
            p50_ms=number(r"P50US (\d+)") / 1000,
            p99_ms=number(r"P99US (\d+)") / 1000,
            max_ms=number(r"MAXUS (\d+)") / 1000,
            client_cpu=cpu,
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_load(
    url: str,
    duration: int,
    connections: int,
    body: str = "valid",
    *,
    threads: int = 1,
    expect: tuple[int, ...] = (200,),
) -> Load:
    """Start ``wrk`` posting ``body`` ("valid" or "flood") to ``url`` as fast as the
    server answers, on ``connections`` connections, for ``duration`` seconds. Only one
    load may be reaped at a time for its ``client_cpu`` to be its own (:meth:`Load.result`
    after the other's)."""
    lua = (
        WRK_LUA.replace("__BODY__", body)
        .replace("__SECRET__", SECRET)
        .replace("__RUN__", uuid.uuid4().hex[:8])
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
        "-s", handle.name, url,
    ]  # fmt: skip
    before = _children_cpu()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return Load(process, float(duration), expect, Path(handle.name), before)


def run_load(
    url: str,
    duration: int,
    connections: int,
    body: str = "valid",
    *,
    threads: int = 1,
    expect: tuple[int, ...] = (200,),
) -> LoadResult:
    return start_load(url, duration, connections, body, threads=threads, expect=expect).result()


# --- the server and its database ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    env: dict[str, str], log: Path, host: str = "127.0.0.1"
) -> tuple[subprocess.Popen[bytes], str]:
    """``alphapulse serve`` on a free port (bound to ``host``); its URL on 127.0.0.1."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alphapulse_dagster.cli",
            "serve",
            "--host",
            host,
            "--port",
            str(port),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not start; see {log}")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_idle() -> float:
    """Idle CPU seconds of the whole machine so far (all cores, ``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh Postgres database with the schema (dropped afterwards); yields its URL."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"alphapulse_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def count_rows(database_url: str, table: str) -> int:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        count = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    engine.dispose()
    return int(count)
