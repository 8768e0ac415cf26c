"""A fusion version published under a running worker: the catalogue is re-embedded in the
background while answers keep coming from the old item space, then they switch once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures.kafka import TopicReader, wait_until
from test_end_to_end import COOKING, SPACE

from models import fusion
from models.publish import publish_new_fusion, scratch_repository
from worker.settings import Settings
from worker.stack.tritonserver import TritonServer
from worker.stack.worker_process import WorkerProcess
from worker.store import EdgeVectorStore
from worker.triton import ItemContent, TritonClient

pytestmark = pytest.mark.integration

ITEMS = {
    **{f"space-{n}": (text, "space") for n, text in enumerate(SPACE)},
    **{f"cooking-{n}": (text, "cooking") for n, text in enumerate(COOKING)},
}
LATE = ("space-late", "A comet probe lands on an icy moon of Jupiter", "space")
USERS = ["space-fan", "cooking-fan"]


@pytest.fixture
def polling_triton(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TritonServer]:
    """A tritonserver polling a repository whose fusion model the test may publish to."""
    repo, weights = scratch_repository(tmp_path / "models")
    monkeypatch.setattr(fusion, "WEIGHTS_DIR", weights)
    poll = ("--model-control-mode=poll", "--repository-poll-secs=1")
    server = TritonServer(repo, tmp_path / "triton", extra_args=poll).start()
    try:
        yield server
    finally:
        server.stop()


async def click_until(producer: AIOKafkaProducer, s: Settings, stop: asyncio.Event) -> None:
    """Each user clicks their genre's items in turn, one event every 50 ms."""
    n = 0
    while not stop.is_set():
        user = USERS[n % 2]
        genre = user.split("-")[0]
        event = {
            "event_id": uuid.uuid4().hex,
            "user_id": user,
            "item_id": f"{genre}-{(n // 2) % 3}",
            "type": "click",
            "ts": time.time(),
            "context": {"categories": [genre]},
        }
        await producer.send_and_wait(s.events_topic, orjson.dumps(event), key=user.encode())
        n += 1
        await asyncio.sleep(0.05)


async def send_item(
    producer: AIOKafkaProducer, s: Settings, item_id: str, text: str, genre: str
) -> None:
    item = {"item_id": item_id, "text": text, "category": genre}
    await producer.send_and_wait(s.items_topic, orjson.dumps(item), key=item_id.encode())


async def test_a_published_fusion_version_re_embeds_the_catalogue_and_answers_switch_once(
    producer: AIOKafkaProducer,
    stack_settings: Settings,
    polling_triton: TritonServer,
    tmp_path: Path,
) -> None:
    s = stack_settings.model_copy(
        update={"triton_url": polling_triton.http_url, "reembed_check_interval_s": 0.5}
    )
    client = TritonClient(polling_triton.http_url, version_ttl_s=0.0)
    await client.wait_ready(timeout_s=60.0)
    old = await client.versions()
    worker = WorkerProcess(s, tmp_path / "worker.log").start()
    recs = await TopicReader(s.kafka_bootstrap_servers or "", s.recommendations_topic).start()
    stop_clicking = asyncio.Event()
    clicking: asyncio.Task[None] | None = None
    try:
        for item_id, (text, genre) in ITEMS.items():
            await send_item(producer, s, item_id, text, genre)
        await wait_until(
            lambda: worker.metric("streamrec_items_indexed_total") == len(ITEMS), timeout_s=60
        )
        clicking = asyncio.create_task(click_until(producer, s, stop_clicking))

        publish_new_fusion(polling_triton.model_repository)
        await wait_until_served(client, old.item_space)
        new = await client.versions()
        # Served now: only the new fusion version can embed this item.
        await send_item(producer, s, *LATE)
        await wait_until(
            lambda: worker.metric("streamrec_item_space_switches_total") == 1.0, timeout_s=90
        )
        await read_answers_until(recs, time.time() + 1.0)
        reembedded = worker.metric("streamrec_reembed_items_total") or 0
        assert worker.metric("streamrec_reembed_missing_items") == 0.0
        # The user encoder declares the fusion version it was trained on: no longer served.
        assert worker.metric("streamrec_user_model_fits_item_space") == 0.0
        items_per_second = worker.metric("streamrec_reembed_items_per_second") or 0
    finally:
        stop_clicking.set()
        if clicking is not None:
            await clicking
        await recs.stop()
        worker.stop()

    answers = sorted(
        (doc["generated_at"], doc["model_version"], [i["item_id"] for i in doc["items"]])
        for doc in (orjson.loads(r.value) for r in recs.records)
    )
    labels = [version for _, version, _ in answers]
    assert set(labels) == {old.full, new.full}
    first_new = labels.index(new.full)
    assert old.full not in labels[first_new:], "model_version switched back and forth"
    assert all(LATE[0] not in items for _, version, items in answers if version == old.full), (
        "an item embedded by the new fusion was searched with old-space vectors"
    )
    assert any(LATE[0] in items for _, version, items in answers if version == new.full)
    assert reembedded >= len(ITEMS) and items_per_second > 0

    # The worker's store now holds the new space only, each vector as the new fusion makes it.
    try:
        await assert_store_in_space(s, client, new.item_space)
        # A worker restarted on an empty disk restores the new space from item-vectors (the
        # old space's records are skipped): nothing to embed again.
        fresh = s.model_copy(update={"data_dir": tmp_path / "fresh"})
        restarted = WorkerProcess(fresh, tmp_path / "fresh.log").start()
        try:
            await asyncio.sleep(3 * s.reembed_check_interval_s)
            assert not restarted.metric("streamrec_reembed_items_total")
            assert not restarted.metric("streamrec_items_indexed_total")
        finally:
            restarted.stop()
        await assert_store_in_space(fresh, client, new.item_space)
    finally:
        await client.close()


async def assert_store_in_space(s: Settings, client: TritonClient, space: str) -> None:
    """The worker's store holds every item, in `space` only, as `client`'s Triton embeds it."""
    store = EdgeVectorStore(
        s.data_dir / "qdrant-edge", client.dim, items_collection=s.items_collection
    )
    await store.open()
    try:
        ids = [*ITEMS, LATE[0]]
        texts = [ITEMS[i][0] if i in ITEMS else LATE[1] for i in ids]
        stored = await store.get_item_vectors(ids)
        contents = [
            ItemContent(text=f"{t}. Category: {ITEMS.get(i, LATE)[-1]}")
            for i, t in zip(ids, texts, strict=True)
        ]
        expected, _ = await client.embed_items(contents)
        assert store.item_space == space and store.pending_space is None
        assert sorted(stored) == sorted(ids)
        for item_id, vector in zip(ids, expected, strict=True):
            np.testing.assert_allclose(stored[item_id], vector, atol=1e-4)
    finally:
        await store.close()


async def wait_until_served(client: TritonClient, old_space: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.versions()).item_space == old_space:
        assert time.monotonic() < deadline, "the new fusion version was not served"
        await asyncio.sleep(0.2)


async def read_answers_until(recs: TopicReader, ts: float, timeout_s: float = 30.0) -> None:
    """Read answers until one generated after `ts` arrived."""
    deadline = time.monotonic() + timeout_s
    while not any(orjson.loads(r.value)["generated_at"] > ts for r in recs.records):
        assert time.monotonic() < deadline, "no answers after the switch"
        await recs.poll()
