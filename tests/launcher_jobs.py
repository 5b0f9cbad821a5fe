"""Two tiny jobs the fork-server launcher test runs in forked run workers (a module, so a
run worker can import them by name)."""

from __future__ import annotations

import time

import dagster as dg


@dg.op
def answer() -> int:
    return 42


@dg.job
def quick_job() -> None:
    answer()


@dg.op
def wait_for_cancel() -> None:
    for _ in range(600):  # at most 60 s: the test cancels it long before
        time.sleep(0.1)


@dg.job
def slow_job() -> None:
    wait_for_cancel()
