"""How long a process stood still: the embedded engine holds Python's GIL for a whole call,
so a thread that cannot run for that long means the event loop, the Kafka callbacks and
every other thread of a worker could not either."""

from __future__ import annotations

import threading
import time


class StallWatch:
    """The longest time a 1 ms sleeper thread was kept from running."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._running = False
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> StallWatch:
        self._running = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join()

    def _tick(self) -> None:
        while self._running:
            before = time.perf_counter()
            time.sleep(0.001)
            self.longest_s = max(self.longest_s, time.perf_counter() - before - 0.001)
