"""A run launcher whose run workers start warm: forked from a server that already imported
Dagster and the code location, instead of a fresh interpreter per run.

Why: Dagster's ``DefaultRunLauncher`` asks the code server to *spawn* each run worker, and
a spawned worker imports Dagster, pandas, SQLAlchemy and the definitions before its first
step. On the two-core box that was 4–6 s of every sensor run (11–12 s under load), most
of the webhook → reconciled latency (bench/RESULTS.md). Here the daemon keeps one
``multiprocessing`` fork server that imports ``preload_modules`` once; each run forks from
it in milliseconds and executes exactly what ``dagster api execute_run`` executes (the
command Dagster's Docker and Kubernetes launchers run), so the run's events, its status
and its failure handling are Dagster's own.

Limits, on purpose: the fork server holds the code it imported when it started, so restart
the daemon when you deploy new code (you restart the code server then anyway); and run
workers live on the daemon's machine, in its environment (the same ``ALPHAPULSE_*``, the
same Python). Termination is by process id on that machine.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import dagster._check as check
from dagster import Array, Field
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

#: run tag holding the run worker's process id (for termination)
PID_TAG = "alphapulse/run_worker_pid"


def execute_run(serialized_args: str) -> None:
    """The run worker's body: ``dagster api execute_run <args>``, in this process."""
    from dagster._cli import cli

    cli.main(args=["api", "execute_run", serialized_args], prog_name="dagster")


class ForkserverRunLauncher(RunLauncher, ConfigurableClass):
    """Launch each run in a process forked from a warm ``multiprocessing`` fork server.

    Config: ``preload_modules`` — what the fork server imports once (the code location's
    module, e.g. ``alphapulse_dagster.definitions``). A module that fails to import is
    skipped by the fork server and imported by each run instead (slower, still correct).
    """

    def __init__(
        self,
        preload_modules: Sequence[str] = (),
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._inst_data = inst_data
        self._preload = ["__main__", "dagster._cli", __name__, *preload_modules]
        self._lock = threading.Lock()
        self._context: Any = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "preload_modules": Field(
                Array(str),
                is_required=False,
                default_value=[],
                description="Modules the fork server imports once, e.g. the code location.",
            )
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> ForkserverRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def _fork_context(self) -> Any:
        """The fork server context, created on the first launch (only the process that
        launches runs — the daemon — ever starts a fork server)."""
        with self._lock:
            if self._context is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(self._preload)
                self._context = context
            return self._context

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        args = ExecuteRunArgs(
            job_origin=check.not_none(context.job_code_origin),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        worker = self._fork_context().Process(
            target=execute_run, args=(serialize_value(args),), name=f"run-{run.run_id[:8]}"
        )
        worker.start()
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(worker.pid)})
        # reap the worker's exit status when it ends, so no handle outlives its run
        threading.Thread(target=worker.join, daemon=True).start()

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or PID_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        try:
            # the run worker turns SIGINT into an interrupt at a safe point: run CANCELED
            os.kill(int(run.tags[PID_TAG]), signal.SIGINT)
        except ProcessLookupError:
            return False
        return True
