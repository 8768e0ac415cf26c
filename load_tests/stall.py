"""How long a process stood still: the embedded engine holds Python's GIL for a whole call,
so a thread that cannot run for that long means the event loop, the Kafka callbacks and
every other thread of a worker could not either."""

from __future__ import annotations

import threading
import time


class StallWatch:
    """The longest time a 1 ms sleeper thread was kept from running, and when each stall
    over `record_over_s` began (seconds from the start) and how long it lasted (ms)."""

    def __init__(self, record_over_s: float = 0.05) -> None:
        self.longest_s = 0.0
        self.stalls: list[tuple[float, float]] = []
        self._record_over_s = record_over_s
        self._started = 0.0
        self._running = False
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> StallWatch:
        self._running = True
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join()

    def _tick(self) -> None:
        while self._running:
            before = time.perf_counter()
            time.sleep(0.001)
            stall = time.perf_counter() - before - 0.001
            self.longest_s = max(self.longest_s, stall)
            if stall > self._record_over_s:
                self.stalls.append((round(before - self._started, 2), round(stall * 1000, 1)))
