"""The size-or-deadline micro-batcher (pure: the fetch and the clock are injected).

A batch closes when it holds `size` records or `within_s` after its first record arrived,
whichever comes first; an idle source returns an empty batch after `idle_s`, so the caller
can check for shutdown between polls.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
# fetch(timeout_s, max_records) -> what arrived within the timeout (possibly nothing)
Fetch = Callable[[float, int], Awaitable[list[T]]]


async def collect_batch(
    fetch: Fetch[T],
    *,
    size: int,
    within_s: float,
    idle_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[T]:
    batch = await fetch(idle_s, size)
    if not batch:
        return batch
    deadline = clock() + within_s
    while len(batch) < size:
        remaining = deadline - clock()
        if remaining <= 0:
            break
        batch.extend(await fetch(remaining, size - len(batch)))
    return batch
