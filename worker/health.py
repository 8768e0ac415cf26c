"""Readiness from what the worker actually sees: dependencies failing, pipelines joined.

Ready = started, every pipeline has joined its consumer group, and no dependency is failing.
A dependency is marked failing by the first infrastructure error that names it and marked
back up by the next success or probe that reaches it.
"""

from __future__ import annotations

import logging

from worker.metrics import Metrics

log = logging.getLogger(__name__)
DEPENDENCIES = ("kafka", "triton", "qdrant", "topics")


class Health:
    def __init__(self, metrics: Metrics, pipelines: tuple[str, ...]) -> None:
        self.metrics = metrics
        self._failing: dict[str, str] = {}
        self._waiting = set(pipelines)  # pipelines not assigned partitions yet
        self._started = False
        for dependency in DEPENDENCIES:
            metrics.dependency_up.labels(dependency).set(1)
        self._publish()

    @property
    def ready(self) -> bool:
        return self._started and not self._waiting and not self._failing

    @property
    def is_started(self) -> bool:
        return self._started

    @property
    def waiting(self) -> set[str]:
        """The pipelines not assigned partitions yet."""
        return set(self._waiting)

    @property
    def failing(self) -> dict[str, str]:
        return dict(self._failing)

    def started(self) -> None:
        self._started = True
        self._publish()

    def stopping(self) -> None:
        self._started = False
        self._publish()

    def joined(self, pipeline: str) -> None:
        self._waiting.discard(pipeline)
        self._publish()

    def down(self, dependency: str, reason: str) -> None:
        if dependency not in self._failing:
            log.warning("%s is failing: %s", dependency, reason)
        self._failing[dependency] = reason
        self.metrics.dependency_up.labels(dependency).set(0)
        self._publish()

    def up(self, dependency: str) -> None:
        if self._failing.pop(dependency, None) is not None:
            log.info("%s answers again", dependency)
        self.metrics.dependency_up.labels(dependency).set(1)
        self._publish()

    def _publish(self) -> None:
        self.metrics.ready.set(1 if self.ready else 0)
