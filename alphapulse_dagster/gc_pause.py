"""Bulk work without the cyclic garbage collector's full collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_gc_pauses() -> Iterator[None]:
    """Suspend the cyclic garbage collector for one piece of bulk work. Bulk reads and
    writes (a sync cycle, a year of outcomes) allocate millions of short-lived, acyclic
    objects (rows, tuples, JSON documents) that reference counting frees; they still
    trigger full collections that walk the whole heap again and again (~15 % of a sync
    cycle, ~2 s of a year's outcomes). Restored (never left off) whatever happens; cycles
    made meanwhile are collected afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
