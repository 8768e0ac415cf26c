"""A running worker indexes its items and its users collections in another process and
keeps answering."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures.kafka import TopicReader, wait_until

from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

ITEMS = 150
BUILDS = 'streamrec_index_builds_total{collection="items",outcome="swapped"}'
USER_BUILDS = 'streamrec_index_builds_total{collection="users",outcome="swapped"}'
USERS = 120


@pytest.mark.parametrize("items_process", [False, True])
async def test_a_worker_indexes_its_catalogue_in_another_process_and_answers_from_it(
    producer: AIOKafkaProducer, stack_settings: Settings, tmp_path: Path, items_process: bool
) -> None:
    # items_process: the items collections in processes of their own (ITEMS_PROCESS)
    s = stack_settings.model_copy(
        update={
            "index_after_items": 100,
            "index_check_interval_s": 0.5,
            "items_process": items_process,
        }
    )
    worker = WorkerProcess(s, tmp_path / "worker.log").start()
    recs = await TopicReader(s.kafka_bootstrap_servers or "", s.recommendations_topic).start()
    try:
        await _send_items(producer, s, worker, ITEMS)
        await wait_until(lambda: (worker.metric(BUILDS) or 0) >= 1, timeout_s=60)
        # Items written after the copy wait unindexed for the next build.
        assert (worker.metric("streamrec_unindexed_items") or 0) < s.index_after_items

        items = await _answer(producer, recs, s, "u1", "i3")
        assert len(items) == s.recommendations_k and "i3" not in items
    finally:
        await recs.stop()
        worker.stop()


async def test_a_worker_indexes_its_users_in_another_process_and_answers_after_the_swap(
    producer: AIOKafkaProducer, stack_settings: Settings, tmp_path: Path
) -> None:
    s = stack_settings.model_copy(update={"users_index_after": 100, "index_check_interval_s": 0.5})
    worker = WorkerProcess(s, tmp_path / "worker.log").start()
    recs = await TopicReader(s.kafka_bootstrap_servers or "", s.recommendations_topic).start()
    try:
        await _send_items(producer, s, worker, 20)
        for n in range(USERS):
            event = {"event_id": f"e{n}", "user_id": f"u{n}", "item_id": f"i{n % 20}",
                     "type": "click", "ts": time.time()}  # fmt: skip
            await producer.send(s.events_topic, orjson.dumps(event), key=f"u{n}".encode())
        await producer.flush()
        await wait_until(lambda: (worker.metric(USER_BUILDS) or 0) >= 1, timeout_s=60)
        assert (worker.metric("streamrec_unindexed_users") or 0) < s.users_index_after

        # A user saved before the build, answered from the swapped-in collection.
        items = await _answer(producer, recs, s, "u7", "i3")
        assert "i3" not in items and "i7" not in items  # both seen by u7
    finally:
        await recs.stop()
        worker.stop()


async def _send_items(
    producer: AIOKafkaProducer, s: Settings, worker: WorkerProcess, count: int
) -> None:
    for n in range(count):
        item = {"item_id": f"i{n}", "text": f"Item number {n} about topic {n % 7}"}
        await producer.send_and_wait(s.items_topic, orjson.dumps(item), key=f"i{n}".encode())
    await wait_until(lambda: worker.metric("streamrec_items_indexed_total") == count, timeout_s=60)


async def _answer(
    producer: AIOKafkaProducer, recs: TopicReader, s: Settings, user_id: str, item_id: str
) -> list[str]:
    """The items of the answer to this user's click on this item."""
    event_id = uuid.uuid4().hex
    event = {"event_id": event_id, "user_id": user_id, "item_id": item_id, "type": "click",
             "ts": time.time()}  # fmt: skip
    await producer.send_and_wait(s.events_topic, orjson.dumps(event), key=user_id.encode())
    answer = await recs.wait_for(
        lambda r: event_id in orjson.loads(r.value)["event_ids"], timeout_s=30
    )
    return [i["item_id"] for i in orjson.loads(answer.value)["items"]]
