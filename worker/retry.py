"""Retrying infrastructure failures: backoff, probes, and giving up only at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from worker.errors import InfrastructureError
from worker.health import Health
from worker.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
# probe(dependency): returns when the dependency answers, raises InfrastructureError if not.
Probe = Callable[[str], Awaitable[None]]


class Abandoned(Exception):
    """The worker is stopping while a step waits on a failing dependency: the batch is left
    unanswered and uncommitted (its next owner gets it again)."""


@dataclass(slots=True)
class Retrier:
    pipeline: str
    stop: asyncio.Event
    probe: Probe
    health: Health
    metrics: Metrics
    backoff_max_s: float
    probe_interval_s: float

    async def until_done(self, step: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` until it succeeds. On an InfrastructureError: mark the dependency down,
        wait for it (the probe says it is back, or the backoff ran out) and try again.
        Raises Abandoned once the worker is stopping and the dependency still fails."""
        delay = self.probe_interval_s
        failed: str | None = None
        while True:
            try:
                result = await fn()
            except InfrastructureError as exc:
                failed = exc.dependency
                self.metrics.infra_failures.labels(failed).inc()
                self.metrics.batch_failures.labels(self.pipeline).inc()
                self.health.down(failed, str(exc))
                log.warning("%s %s: %s failing (%s); retrying", self.pipeline, step, failed, exc)
                await self._wait_for(failed, delay)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            if failed is not None:
                self.health.up(failed)
            return result

    async def _wait_for(self, dependency: str, delay_s: float) -> None:
        """Sleep out `delay_s`, ending early once a probe that saw the dependency down sees
        it answer again (a probe blind to this failure cannot shorten the backoff)."""
        deadline = time.monotonic() + delay_s
        seen_down = False
        while True:
            if self.stop.is_set():
                raise Abandoned(f"{self.pipeline}: stopping while {dependency} fails")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await _sleep_or_stop(self.stop, min(self.probe_interval_s, remaining))
            if self.stop.is_set():
                continue
            try:
                await asyncio.wait_for(self.probe(dependency), self.probe_interval_s * 4)
            except (InfrastructureError, TimeoutError):
                seen_down = True
                continue
            if seen_down:
                return


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
