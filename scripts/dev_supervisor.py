"""``make dev``'s two processes — ``dagster dev`` (UI, daemon, code server) and
``alphapulse serve`` (webhooks and API) — started together and stopped together.

Ctrl+C (or SIGTERM) stops both within about three seconds, without a traceback:

1. Each child runs in its own process group, so the terminal's Ctrl+C reaches only this
   supervisor, which asks each child's leader to stop (SIGTERM): ``dagster dev`` shuts its
   webserver, daemon and code server down in order, uvicorn drains.
2. Whatever is left of either group at ``GRACE_SECONDS`` — usually a run worker in the
   middle of a sync run — is killed (SIGKILL). Interrupting a run worker politely would
   print Dagster's ``DagsterExecutionInterruptedError`` traceback for every step; a
   killed one prints nothing. The Dagster instance and the app database are SQLite in WAL
   mode (or Postgres), so a killed writer loses at most its open transaction.
3. A run killed that way would stay "started" in the Dagster instance. So at the next
   start, runs that a previous session left in progress are marked *canceled* ("stopped
   with make dev"), in the background while the services start: before anything could
   have launched a new run, every run in progress is one whose worker is gone. The sync
   is idempotent, so the next cycle redoes their work.

If either child exits on its own, the other is stopped the same way and the supervisor
exits with the child's status.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

GRACE_SECONDS = 2.5


class Stop(Exception):
    """Ctrl+C or SIGTERM arrived."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal: still there
        return True
    return True


def _become_subreaper() -> None:
    """On Linux, orphaned grandchildren (say, a run worker whose code server has exited)
    are re-parented to this process instead of to init, and reaped by it. Where init does
    not reap (some containers), they would otherwise stay zombies, still members of their
    process group, and a stop would wait for them until its deadline."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap(children: list[subprocess.Popen[bytes]]) -> None:
    """Collect every exited child: our two through ``Popen`` (which keeps the exit
    status), adopted orphans directly."""
    ours = {child.pid: child for child in children}
    while True:
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # no children at all
            return
        if exited is None:
            return
        if exited.si_pid in ours:
            ours.pop(exited.si_pid).wait()
        else:
            os.waitpid(exited.si_pid, 0)


def _wait_for_groups(children: list[subprocess.Popen[bytes]], until: float) -> None:
    while time.monotonic() < until and any(_group_alive(c.pid) for c in children):
        _reap(children)  # a zombie still counts as a member of its group
        time.sleep(0.05)


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    """Steps 1 and 2 of the module docstring."""
    started = time.monotonic()
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    _wait_for_groups(children, started + GRACE_SECONDS)
    for child in children:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:  # the group is gone: nothing left to stop
            pass
    _wait_for_groups(children, started + GRACE_SECONDS + 0.5)


def cancel_orphaned_runs(before: datetime) -> None:
    """Step 3: runs created before this session and still "in progress" have no worker."""
    home = os.environ.get("DAGSTER_HOME")
    if not home or not (Path(home) / "history").exists():  # temporary or fresh instance
        return
    try:
        import dagster as dg

        in_progress = [
            dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED,
            dg.DagsterRunStatus.CANCELING,
        ]
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(dg.RunsFilter(statuses=in_progress, created_before=before))
            for run in runs:
                instance.report_run_canceled(run, message="stopped with make dev (Ctrl+C)")
    except Exception as exc:  # bookkeeping only: never stop the session for it
        print(f"dev: could not check for interrupted runs ({type(exc).__name__}: {exc})")
        return
    if runs:
        print(f"dev: {len(runs)} run(s) interrupted by the last stop marked canceled", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bin", default=str(Path(sys.executable).parent), help="venv bin dir")
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--api-port", type=int, default=8000)
    args = parser.parse_args(argv)
    bin_dir = Path(args.bin)

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    _become_subreaper()
    session_start = datetime.now(UTC)
    children: list[subprocess.Popen[bytes]] = []
    status = 0
    try:
        api = subprocess.Popen(
            [str(bin_dir / "alphapulse"), "serve", "--port", str(args.api_port)],
            start_new_session=True,
        )
        children.append(api)
        dagster = subprocess.Popen(
            [str(bin_dir / "dagster"), "dev", "-p", str(args.dagster_port)],
            start_new_session=True,
        )
        children.append(dagster)
        threading.Thread(target=cancel_orphaned_runs, args=(session_start,), daemon=True).start()
        print(
            f"dev: Dagster UI on http://localhost:{args.dagster_port} (dagster dev, pid "
            f"{dagster.pid}), API on http://localhost:{args.api_port} (alphapulse serve, pid "
            f"{api.pid}); Ctrl+C stops both",
            flush=True,
        )
        while True:
            _reap(children)
            for child, name in ((api, "alphapulse serve"), (dagster, "dagster dev")):
                if child.poll() is not None:
                    print(f"dev: {name} exited with status {child.returncode}", flush=True)
                    status = child.returncode or 1
                    raise Stop("child exited")
            time.sleep(0.2)
    except Stop:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C cannot cut the stop short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\ndev: stopping Dagster and the API ...", flush=True)
        began = time.monotonic()
        stop(children)
        print(f"dev: stopped in {time.monotonic() - began:.1f}s", flush=True)
    return status


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # nothing to clean up; skipping the interpreter's teardown (and a background thread
    # that may still be importing Dagster) keeps the stop short on a busy machine
    os._exit(code)
