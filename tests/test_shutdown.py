"""SIGTERM while Triton is down: a fast exit that commits nothing it did not answer, and
every event answered once the worker runs again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from load_tests.chaos.harness import ChaosStack, Sent
from load_tests.chaos.ledger import Ledger

pytestmark = pytest.mark.integration


async def _committed(stack: ChaosStack) -> dict[int, int]:
    s = stack.settings
    assert s is not None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap_servers,
        group_id=f"{s.consumer_group}.events",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return {
            p: (await consumer.committed(TopicPartition(s.events_topic, p))) or 0
            for p in range(s.topic_partitions)
        }
    finally:
        await consumer.stop()


async def _settle(ledger: Ledger, sent: Sent, timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.2)):
        if ledger.account(sent.where)["lost"] == 0:
            return
        await asyncio.sleep(0.2)


async def test_sigterm_during_a_triton_outage_exits_fast_and_commits_nothing_unanswered(
    tmp_path: Path,
) -> None:
    stack = ChaosStack(tmp_path)
    try:
        settings = await stack.start(items=30)
        ledger = await Ledger(
            stack.broker.bootstrap_servers, settings.recommendations_topic,
            [settings.events_dlq_topic],
        ).start()  # fmt: skip
        before = Sent()
        await stack.send_events(40, 200.0, 10, before, prefix="b")
        await _settle(ledger, before, 30.0)
        assert ledger.account(before.where)["lost"] == 0

        stack.triton.send_signal(signal.SIGKILL, group=True)  # with its backend stubs
        stack.triton.wait_exit(10.0)
        during = Sent()
        await stack.send_events(40, 200.0, 10, during, prefix="d")
        await asyncio.sleep(1.5)  # fetched, failing, retrying
        exit_s = stack.signal_worker(signal.SIGTERM)
        assert exit_s < 5.0 and stack.crashes == 0

        committed = await _committed(stack)
        unanswered = [w for e, w in during.where.items() if not ledger.answered[e]]
        assert unanswered, "the outage should have left events unanswered"
        for _, partition, offset in unanswered:
            assert committed[partition] <= offset

        # Triton and the worker back: every event is answered, none lost.
        await asyncio.to_thread(stack.triton.start)
        await asyncio.to_thread(stack.start_worker)
        await _settle(ledger, during, 60.0)
        await ledger.stop()
        assert ledger.account(during.where)["lost"] == 0
    finally:
        stack.close()
