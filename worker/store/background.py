"""Background file work of the embedded store (an index build's copy of a collection, the
removal of the one it replaced) at a lower CPU priority than the worker's own threads.

At a million items the copy and the removal each move ~2 GB; on a machine with few cores a
search batch running meanwhile took up to 3.7x its steady time (the copy) and 2.8x (the
removal). Linux's nice value is per thread, so the work gets a thread of its own, niced by
BUILD_NICENESS like the build's process (edge_index.py), and yields the CPU to the worker's
own threads; a new thread each time, so no pooled thread stays niced.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from worker.store.edge_index import BUILD_NICENESS

T = TypeVar("T")


async def at_low_priority(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """`fn(*args, **kwargs)` on a new thread niced by BUILD_NICENESS (Linux; elsewhere at
    the usual priority). Cancelling the caller leaves the thread to finish on its own."""

    def niced() -> T:
        lower_this_threads_priority()
        return fn(*args, **kwargs)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-background")
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, niced)
    finally:
        executor.shutdown(wait=False)


def lower_this_threads_priority() -> None:
    if sys.platform != "linux":  # there PRIO_PROCESS with a thread id would mean a process
        return
    thread = threading.get_native_id()
    try:
        niceness = min(os.getpriority(os.PRIO_PROCESS, thread) + BUILD_NICENESS, 19)
        os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except OSError:
        pass  # only a priority: the work is the same
