"""The pipeline's rebalance callbacks (no broker: the consumer is never started)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, MagicMock

from worker.erasure import Erasure
from worker.health import Health
from worker.metrics import Metrics
from worker.pipeline import Pipeline, PipelineSpec
from worker.records import BatchResult
from worker.settings import load_settings
from worker.store import UserState


def _pipeline(on_assigned: object, tmp_path: Path) -> Pipeline:
    settings = load_settings(kafka_bootstrap_servers="127.0.0.1:1", data_dir=tmp_path)
    ctx = MagicMock()
    ctx.settings = settings
    metrics = Metrics()

    async def handler(messages: object, carried: object) -> BatchResult:
        return BatchResult()

    spec = PipelineSpec("events", "user-events", "user-events.dlq", 8, 0.01, 10, handler)
    return Pipeline(
        spec, ctx, MagicMock(), Health(metrics, ("events",)), metrics, asyncio.Event(),
        on_assigned=on_assigned,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_batches_wait_while_newly_assigned_partitions_are_restored(tmp_path: Path) -> None:
    release = asyncio.Event()
    restored: list[list[int]] = []

    async def restore(partitions: list[int]) -> None:
        restored.append(partitions)
        await release.wait()

    pipeline = _pipeline(restore, tmp_path)
    assigning = asyncio.create_task(pipeline.on_partitions_assigned([2, 0]))
    await asyncio.sleep(0.01)
    assert restored == [[0, 2]]
    assert pipeline.in_flight.locked(), "a batch would run on state not restored yet"
    assert pipeline.assigned == set(), "fan-out waits for the restore too"
    release.set()
    await assigning
    assert not pipeline.in_flight.locked()
    assert pipeline.assigned == {0, 2}

    await pipeline.on_partitions_revoked([2])
    assert pipeline.assigned == {0}


async def test_an_erasure_is_on_disk_before_its_confirmation_is_published(tmp_path: Path) -> None:
    pipeline = _pipeline(None, tmp_path)
    calls: list[str] = []

    def recorded(name: str) -> AsyncMock:
        return AsyncMock(side_effect=lambda *args: calls.append(name))

    store: Any = pipeline.ctx.store
    store.delete_users, store.upsert_users = recorded("delete"), recorded("upsert")
    store.flush_users = recorded("flush")
    output: Any = pipeline.output
    output.publish = recorded("publish")
    erasure = Erasure("u", "forget-1", 2.0, 0)
    await pipeline._deliver(BatchResult(erasures=[erasure], user_states=[UserState("v")]))
    assert calls == ["delete", "upsert", "flush", "publish"]

    calls.clear()
    await pipeline._deliver(BatchResult(user_states=[UserState("v")]))
    assert "flush" not in calls and "publish" in calls, "no flush on the hot path"
