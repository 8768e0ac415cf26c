"""A running worker indexes its items collection in another process and keeps answering."""

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
BUILDS = 'streamrec_index_builds_total{outcome="swapped"}'


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
        for n in range(ITEMS):
            item = {"item_id": f"i{n}", "text": f"Item number {n} about topic {n % 7}"}
            await producer.send_and_wait(s.items_topic, orjson.dumps(item), key=f"i{n}".encode())
        await wait_until(
            lambda: worker.metric("streamrec_items_indexed_total") == ITEMS, timeout_s=60
        )
        await wait_until(lambda: (worker.metric(BUILDS) or 0) >= 1, timeout_s=60)
        # Items written after the copy wait unindexed for the next build.
        assert (worker.metric("streamrec_unindexed_items") or 0) < s.index_after_items

        event_id = uuid.uuid4().hex
        event = {"event_id": event_id, "user_id": "u1", "item_id": "i3", "type": "click",
                 "ts": time.time()}  # fmt: skip
        await producer.send_and_wait(s.events_topic, orjson.dumps(event), key=b"u1")
        answer = await recs.wait_for(
            lambda r: event_id in orjson.loads(r.value)["event_ids"], timeout_s=30
        )
        items = [i["item_id"] for i in orjson.loads(answer.value)["items"]]
        assert len(items) == s.recommendations_k and "i3" not in items
    finally:
        await recs.stop()
        worker.stop()
