"""Retrying infrastructure failures: until done, faster when a probe sees recovery,
abandoned at shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from worker.errors import InfrastructureError
from worker.health import Health
from worker.metrics import Metrics
from worker.retry import Abandoned, Retrier


class _Triton(InfrastructureError):
    dependency = "triton"


def _retrier(stop: asyncio.Event, probe_ok: list[bool], metrics: Metrics) -> Retrier:
    async def probe(dependency: str) -> None:
        if not probe_ok[0]:
            raise _Triton("down")

    health = Health(metrics, ("events",))
    health.started()
    health.joined("events")
    return Retrier(
        "events", stop, probe, health, metrics, backoff_max_s=30.0, probe_interval_s=0.02
    )


async def test_a_step_is_retried_until_it_succeeds_and_readiness_follows() -> None:
    metrics = Metrics()
    attempts = []

    async def step() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise _Triton("connection refused")
        return "done"

    retrier = _retrier(asyncio.Event(), [False], metrics)
    assert await retrier.until_done("handle", step) == "done"
    assert len(attempts) == 3
    assert metrics.infra_failures.labels("triton")._value.get() == 2
    assert retrier.health.ready


async def test_a_probe_that_sees_the_dependency_return_ends_the_backoff_early() -> None:
    probe_ok = [False]
    retrier = _retrier(asyncio.Event(), probe_ok, Metrics())
    retrier.backoff_max_s = 30.0
    attempts = []

    async def step() -> None:
        attempts.append(time.monotonic())
        if not probe_ok[0]:
            raise _Triton("down")

    async def recover() -> None:
        await asyncio.sleep(0.3)
        probe_ok[0] = True

    recovering = asyncio.create_task(recover())
    started = time.monotonic()
    await retrier.until_done("handle", step)
    await recovering
    # Triton is back at 0.3 s, during the wait that backoff alone would end at 0.62 s
    # (0.02 + 0.04 + 0.08 + 0.16 + 0.32); the probe ends it once it sees Triton answer.
    assert time.monotonic() - started < 0.5


async def test_a_step_waiting_on_a_failing_dependency_is_abandoned_at_shutdown() -> None:
    stop = asyncio.Event()
    retrier = _retrier(stop, [False], Metrics())

    async def step() -> None:
        raise _Triton("down")

    asyncio.get_running_loop().call_later(0.1, stop.set)
    started = time.monotonic()
    with pytest.raises(Abandoned):
        await retrier.until_done("handle", step)
    assert time.monotonic() - started < 1.0
    assert not retrier.health.ready
