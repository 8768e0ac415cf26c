"""The size-or-deadline micro-batcher, with a fake source and clock."""

from __future__ import annotations

from worker.batching import collect_batch


class _Source:
    def __init__(self, arrivals: list[list[int]]) -> None:
        self.arrivals = arrivals
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def fetch(self, timeout_s: float, max_records: int) -> list[int]:
        self.waits.append(timeout_s)
        if not self.arrivals:
            self.now += timeout_s
            return []
        self.now += 0.001
        got = self.arrivals.pop(0)
        return got[:max_records]


async def test_a_batch_closes_at_its_size() -> None:
    source = _Source([[1, 2, 3], [4, 5, 6]])
    batch = await collect_batch(source.fetch, size=4, within_s=1.0, idle_s=0.1, clock=source.clock)
    assert batch == [1, 2, 3, 4]


async def test_a_batch_closes_at_its_deadline_after_the_first_record() -> None:
    source = _Source([[1]])
    batch = await collect_batch(
        source.fetch, size=64, within_s=0.05, idle_s=0.1, clock=source.clock
    )
    assert batch == [1]
    assert source.now <= 0.1 and sum(source.waits[1:]) <= 0.05 + 1e-9


async def test_an_idle_source_gives_an_empty_batch_after_the_idle_wait() -> None:
    source = _Source([])
    assert await collect_batch(source.fetch, size=8, within_s=1.0, idle_s=0.1) == []
    assert source.waits == [0.1]
