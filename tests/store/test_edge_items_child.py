"""The items process's own end: it exits at the lowest priority, every thread of it."""

from __future__ import annotations

import subprocess
import sys


def test_an_exiting_items_process_yields_the_cpu_in_every_thread() -> None:
    script = (
        "import os, threading, time\n"
        "from worker.store.edge_items_child import lowest_priority\n"
        "done = threading.Event()\n"
        "other = threading.Thread(target=done.wait)\n"
        "other.start()\n"
        "lowest_priority()\n"
        "tids = os.listdir('/proc/self/task')\n"
        "print(sorted({os.getpriority(os.PRIO_PROCESS, int(t)) for t in tids}), len(tids))\n"
        "done.set()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out[0] == "[19]" and int(out[1]) >= 2  # the other thread too
