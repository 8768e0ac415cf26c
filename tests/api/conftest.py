"""One worker process for the read API tests of a module, on the session broker and
tritonserver, with a small catalogue of three genres already indexed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures.kafka import wait_until

from worker.kafka import all_topics, ensure_topics, prefixed_topics
from worker.settings import Settings, load_settings
from worker.stack.broker import LocalBroker
from worker.stack.tritonserver import TritonServer
from worker.stack.worker_process import WorkerProcess

GENRES = {
    "horror": [
        "A haunted house where a ghost terrifies the family at night",
        "Zombies rise from the graveyard and hunt the last survivors",
        "A masked killer stalks teenagers at a summer camp",
        "A demon possesses a young girl and a priest performs an exorcism",
    ],
    "comedy": [
        "Two clumsy friends on a road trip get into hilarious trouble",
        "A wedding goes wrong in the funniest possible ways",
        "A stand-up comedian's chaotic week of jokes and pranks",
        "Office workers play silly pranks on their grumpy boss",
    ],
    "cooking": [
        "Italian pasta recipes: homemade tagliatelle with tomato sauce",
        "Baking bread at home: sourdough, flour and a hot oven",
        "Easy dessert recipes: chocolate cake and vanilla cookies",
        "Street food cooking: tacos, spicy salsa and fresh tortillas",
    ],
}


def catalogue() -> dict[str, dict[str, object]]:
    return {
        f"{genre}-{n}": {"item_id": f"{genre}-{n}", "text": text, "category": genre}
        for genre, texts in GENRES.items()
        for n, text in enumerate(texts)
    }


@pytest.fixture(scope="module")
async def api_settings(
    broker: LocalBroker, triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run = uuid.uuid4().hex[:10]
    tmp = tmp_path_factory.mktemp("api")
    settings = load_settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        triton_url=triton_server.http_url,
        **prefixed_topics(f"api-{run}"),
        consumer_group=f"worker-{run}",
        data_dir=tmp / "data",
        stack_dir=tmp / "stack",
        metrics_port=0,
        freshness_boost=0.0,
    )
    await ensure_topics(settings, all_topics(settings))
    return settings


@pytest.fixture(scope="module")
async def api_worker(
    api_settings: Settings, broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess(api_settings, tmp_path_factory.mktemp("api-log") / "worker.log")
    proc.start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        items = catalogue()
        for item_id, item in items.items():
            await producer.send_and_wait(
                api_settings.items_topic, orjson.dumps(item), key=item_id.encode()
            )
        await wait_until(
            lambda: proc.metric("streamrec_items_indexed_total") == len(items), timeout_s=60
        )
    finally:
        await producer.stop()
    try:
        yield proc
    finally:
        proc.stop()
