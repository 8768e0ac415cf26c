import os
import sys
import threading

import pytest

from worker.store.background import at_low_priority
from worker.store.edge_index import BUILD_NICENESS


def _own_niceness() -> tuple[int, str]:
    return os.getpriority(
        os.PRIO_PROCESS, threading.get_native_id()
    ), threading.current_thread().name


async def test_background_work_runs_on_a_thread_of_its_own_niced_below_the_callers() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    niceness, name = await at_low_priority(_own_niceness)
    # Per-thread nice values are Linux's; elsewhere the work runs at the usual priority.
    lowered = min(before + BUILD_NICENESS, 19) if sys.platform == "linux" else before
    assert niceness == lowered
    assert name.startswith("edge-background")
    # The caller's thread, and the next background thread, start from the usual priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert (await at_low_priority(_own_niceness))[0] == niceness


async def test_background_work_raises_its_errors_to_the_caller() -> None:
    def fail() -> None:
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError, match="gone"):
        await at_low_priority(fail)
