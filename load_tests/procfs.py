"""CPU time and resident memory of a process and its descendants, from /proc (Linux).

Triton's Python backend runs every model instance as a child process, so a server's cost is
its whole tree's."""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack += children.get(current, [])
    return found


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and its live descendants."""
    ticks = 0
    for member in _tree(pid):
        try:
            fields = (_PROC / str(member) / "stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of the process and its descendants, MiB."""
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for member in _tree(pid):
        try:
            total += int((_PROC / str(member) / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20
