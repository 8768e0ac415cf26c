"""The size-or-deadline micro-batcher, with a fake source and clock."""

from __future__ import annotations

import math

from worker.batching import ArrivalRate, collect_batch


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


def _rate(per_s: float) -> ArrivalRate:
    """An estimator that saw `per_s` records a second over the second before time 0."""
    arrivals = ArrivalRate(memory_s=1.0)
    arrivals.observe(0, -1.0)
    arrivals.observe(round(per_s / (1 - math.exp(-1.0))), 0.0)
    return arrivals


async def test_a_batch_at_a_low_arrival_rate_closes_without_waiting() -> None:
    arrivals = _rate(10.0)
    source = _Source([[1], [2]])
    batch = await collect_batch(
        source.fetch, size=64, within_s=0.05, idle_s=0.1, clock=source.clock, arrivals=arrivals
    )
    assert batch == [1]
    assert source.waits == [0.1]  # the first fetch only


async def test_a_long_deadline_does_not_start_waits_at_a_lower_rate() -> None:
    arrivals = _rate(60.0)  # 6 records would come within the deadline: below the rate
    source = _Source([[1], [2]])
    batch = await collect_batch(
        source.fetch, size=64, within_s=0.1, idle_s=0.1, clock=source.clock, arrivals=arrivals
    )
    assert batch == [1]
    assert source.waits == [0.1]


async def test_a_batch_at_a_high_arrival_rate_waits_for_more_records() -> None:
    arrivals = _rate(300.0)
    source = _Source([[1], [2], [3]])
    batch = await collect_batch(
        source.fetch, size=64, within_s=0.05, idle_s=0.1, clock=source.clock, arrivals=arrivals
    )
    assert batch == [1, 2, 3]


async def test_a_waiting_batch_takes_the_rest_in_one_fill_up_to_its_deadline() -> None:
    arrivals = _rate(300.0)
    source = _Source([[1], [2], [3]])
    fills: list[tuple[float, int]] = []

    async def fill(timeout_s: float, max_records: int) -> list[int]:
        fills.append((timeout_s, max_records))
        got = [r for records in source.arrivals for r in records][:max_records]
        source.arrivals.clear()
        source.now += timeout_s  # waited out: fewer records than asked for came
        return got

    batch = await collect_batch(
        source.fetch,
        size=64,
        within_s=0.05,
        idle_s=0.1,
        clock=source.clock,
        arrivals=arrivals,
        fill=fill,
    )
    assert batch == [1, 2, 3]
    assert source.waits == [0.1]  # the first record by a fetch, the rest by one fill
    assert len(fills) == 1 and fills[0][1] == 63 and fills[0][0] <= 0.05


async def test_a_filled_batch_stops_at_its_size() -> None:
    arrivals = _rate(300.0)
    source = _Source([[1]])

    async def fill(timeout_s: float, max_records: int) -> list[int]:
        return list(range(2, 2 + max_records))

    batch = await collect_batch(
        source.fetch, size=4, within_s=0.05, idle_s=0.1, clock=source.clock, arrivals=arrivals,
        fill=fill,
    )  # fmt: skip
    assert batch == [1, 2, 3, 4]


def test_the_arrival_rate_follows_a_steady_source() -> None:
    arrivals = ArrivalRate(memory_s=1.0)
    now = 0.0
    for _ in range(100):  # 5 s of batches of 15 every 50 ms: 300 a second
        now += 0.05
        arrivals.observe(15, now)
    assert abs(arrivals.per_s - 300.0) < 15.0


def test_an_idle_gap_brings_the_arrival_rate_down_at_once() -> None:
    arrivals = ArrivalRate(memory_s=1.0)
    now = 0.0
    for _ in range(100):
        now += 0.05
        arrivals.observe(15, now)
    arrivals.observe(1, now + 5.0)  # one record after 5 idle seconds
    assert arrivals.per_s < 5.0


def test_the_first_batch_only_starts_the_clock() -> None:
    arrivals = ArrivalRate()
    arrivals.observe(40, 12.0)
    assert arrivals.per_s == 0.0
    arrivals.observe(10, 12.5)
    assert arrivals.per_s > 0.0


async def test_a_batch_counts_in_the_arrival_rate_when_it_closes() -> None:
    arrivals = ArrivalRate(memory_s=1.0)
    arrivals.observe(0, 0.0)
    source = _Source([[1, 2, 3, 4]])
    source.now = 1.0
    await collect_batch(
        source.fetch, size=4, within_s=0.05, idle_s=0.1, clock=source.clock, arrivals=arrivals
    )
    # 4 records over the ~1 s since the previous batch, weighted by 1 - e^-1.
    assert abs(arrivals.per_s - 4.0 * (1 - math.exp(-1.001)) / 1.001) < 1e-6


async def test_a_first_batch_after_an_idle_spell_closes_without_waiting() -> None:
    arrivals = _rate(300.0)
    source = _Source([[1], [2]])
    source.now = 5.0  # five seconds without a record since the rate was measured
    batch = await collect_batch(
        source.fetch, size=64, within_s=0.05, idle_s=0.1, clock=source.clock, arrivals=arrivals
    )
    assert batch == [1]
