"""``make dev``'s supervisor: Ctrl+C stops Dagster and the API in at most 5 s, with no
traceback and no stray process (issue 18, item 6). Ctrl+C in a terminal is SIGINT to the
foreground process group; the test sends exactly that to the supervisor's group."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alphapulse_dagster.db.migrate import upgrade
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _group_members(pgid: int) -> list[str]:
    """``pid state command`` of each live (not zombie) process in the group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")[:100]
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"{stat.parent.name} {fields[0]} {command.decode(errors='replace')}")
    return members


@pytest.mark.slow
def test_ctrl_c_stops_dagster_and_the_api_within_five_seconds(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.dev.yaml", home / "dagster.yaml")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPULSE_")}
    env |= {
        "DAGSTER_HOME": str(home),
        "ALPHAPULSE_DATABASE_URL": url,
        "ALPHAPULSE_SPOOL_PATH": str(tmp_path / "spool.jsonl"),
        "PYTHONPATH": str(ROOT),
    }
    dagster_port, api_port = free_port(), free_port()
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "dev_supervisor.py"),
                "--bin",
                str(BIN),
                "--dagster-port",
                str(dagster_port),
                "--api-port",
                str(api_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, like a terminal's foreground job
        )
    try:
        deadline = time.monotonic() + 120
        while not (
            _up(f"http://127.0.0.1:{dagster_port}/server_info")
            and _up(f"http://127.0.0.1:{api_port}/healthz")
        ):
            assert supervisor.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        pressed = time.monotonic()
        os.killpg(supervisor.pid, signal.SIGINT)  # Ctrl+C
        status = supervisor.wait(timeout=30)
        seconds = time.monotonic() - pressed
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()

    output = log.read_text()
    stop_output = output[output.index("dev: stopping") :]
    assert status == 0, output[-3000:]
    assert seconds <= 5.0, f"stopped in {seconds:.1f}s"
    assert "dev: stopped in" in stop_output
    assert "Traceback" not in stop_output and "No such process" not in stop_output
    # nothing left behind: both children's process groups are empty, both ports closed
    pids = [int(p) for p in re.findall(r"pid (\d+)\)", output)]
    assert len(pids) == 2
    left = [member for pid in pids for member in _group_members(pid)]
    assert not left, left
    assert not _up(f"http://127.0.0.1:{dagster_port}/server_info")
    assert not _up(f"http://127.0.0.1:{api_port}/healthz")


def _supervisor_module():  # scripts/ is not a package: load the file itself
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dev_supervisor", ROOT / "scripts" / "dev_supervisor.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_left_in_progress_by_the_last_session_are_marked_canceled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copy(ROOT / "deploy" / "dagster.dev.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        orphan = instance.add_run(
            dg.DagsterRun(job_name="hybrid_sync_job", status=dg.DagsterRunStatus.STARTED)
        )
        done = instance.add_run(
            dg.DagsterRun(job_name="hybrid_sync_job", status=dg.DagsterRunStatus.SUCCESS)
        )
    session_start = datetime.now(UTC) + timedelta(seconds=1)
    _supervisor_module().cancel_orphaned_runs(session_start)
    with dg.DagsterInstance.get() as instance:
        canceled = instance.get_run_by_id(orphan.run_id)
        finished = instance.get_run_by_id(done.run_id)
    assert canceled is not None and canceled.status == dg.DagsterRunStatus.CANCELED
    assert finished is not None and finished.status == dg.DagsterRunStatus.SUCCESS


def test_a_fresh_instance_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    _supervisor_module().cancel_orphaned_runs(datetime.now(UTC))
    assert list(tmp_path.iterdir()) == []  # no instance storage created behind dagster dev
