"""The read API against a real worker process, broker and tritonserver."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
import schemathesis
from aiokafka import AIOKafkaProducer
from fixtures.kafka import TopicReader
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def _url(worker: WorkerProcess, path: str) -> str:
    return f"http://127.0.0.1:{worker.metrics_port}{path}"


async def _get(worker: WorkerProcess, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(_url(worker, path)) as response:
        body = await response.read()
        is_json = response.content_type == "application/json"
        return response.status, orjson.loads(body) if is_json else body.decode()


async def _answered(
    producer: AIOKafkaProducer, settings: Settings, user: str, item: str, etype: str = "like"
) -> dict[str, Any]:
    """Send one event; the answer the worker published for it."""
    event_id = uuid.uuid4().hex
    event = {"event_id": event_id, "user_id": user, "item_id": item, "type": etype}
    await producer.send_and_wait(
        settings.events_topic, orjson.dumps({**event, "ts": time.time()}), key=user.encode()
    )
    recs = await TopicReader(
        settings.kafka_bootstrap_servers or "", settings.recommendations_topic
    ).start()
    try:
        record = await recs.wait_for(
            lambda r: r.value is not None and event_id in orjson.loads(r.value)["event_ids"],
            timeout_s=15,
        )
    finally:
        await recs.stop()
    return orjson.loads(record.value)


async def _stored(worker: WorkerProcess, user: str, event_id: str) -> dict[str, Any]:
    """The stored list once it is the answer to `event_id` (saved at the checkpoint, just
    after the answer is published)."""
    deadline = time.monotonic() + 5.0
    while True:
        status, doc = await _get(worker, f"/recommendations/{user}")
        if (status == 200 and doc.get("event_id") == event_id) or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.05)


async def until(
    worker: WorkerProcess, path: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first answer of `path` that passes `check` (bounded at 10 s)."""
    deadline = time.monotonic() + 10.0
    while True:
        status, doc = await _get(worker, path)
        assert status == 200, doc
        if check(doc) or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.05)


async def test_the_stored_list_is_the_last_answer_and_names_the_liked_film_as_reason(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    answer = await _answered(producer, api_settings, "fan-1", "horror-0")
    stored = await _stored(api_worker, "fan-1", answer["event_id"])
    assert [i["item_id"] for i in stored["items"]] == [i["item_id"] for i in answer["items"]]
    for field in ("generated_at", "model_version", "variant", "strategy"):
        assert stored[field] == answer[field]
    assert stored["variant"] == "default" and stored["model_version"]
    assert stored["fresh"] is False and stored["cold_start"] is False
    horror = [i for i in stored["items"] if i["category"] == "horror"]
    assert horror, "a horror fan gets horror films"
    assert {"kind": "similar_to", "item_id": "horror-0"} in horror[0]["reasons"]
    assert all(i["item_id"] != "horror-0" for i in stored["items"])


async def test_reads_narrow_the_stored_list_by_k_exclude_and_categories(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    answer = await _answered(producer, api_settings, "fan-2", "comedy-1")
    full = await _stored(api_worker, "fan-2", answer["event_id"])
    ids = [i["item_id"] for i in full["items"]]
    _, two = await _get(api_worker, "/recommendations/fan-2?k=2")
    assert [i["item_id"] for i in two["items"]] == ids[:2]
    _, without = await _get(api_worker, f"/recommendations/fan-2?exclude={ids[0]},{ids[1]}")
    assert [i["item_id"] for i in without["items"]] == ids[2:]
    _, comedy = await _get(api_worker, "/recommendations/fan-2?categories=comedy")
    assert comedy["items"] and {i["category"] for i in comedy["items"]} == {"comedy"}


async def test_fresh_computes_an_answer_now_and_records_nothing(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    answer = await _answered(producer, api_settings, "fan-3", "cooking-0")
    before = await _stored(api_worker, "fan-3", answer["event_id"])
    status, fresh = await _get(
        api_worker, "/recommendations/fan-3?fresh=true&categories=horror&k=3&exclude=horror-1"
    )
    assert status == 200 and fresh["fresh"] is True and fresh["event_id"] is None
    assert len(fresh["items"]) == 3 and {i["category"] for i in fresh["items"]} == {"horror"}
    assert "horror-1" not in {i["item_id"] for i in fresh["items"]}
    _, after = await _get(api_worker, "/recommendations/fan-3")
    assert after == before, "a fresh read changes no stored state"


async def test_an_unknown_user_gets_the_cold_start_list_flagged(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    await _answered(producer, api_settings, "fan-4", "comedy-2", etype="click")
    # Trending takes the click once every worker applies it from the signals changelog.
    doc = await until(
        api_worker,
        f"/recommendations/new-{uuid.uuid4().hex[:6]}",
        lambda d: "comedy-2" in {i["item_id"] for i in d["items"]},
    )
    assert doc["cold_start"] is True and doc["strategy"] == "trending"
    assert "comedy-2" in {i["item_id"] for i in doc["items"]}, "trending items"


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/recommendations/u?k=0", "'k'"),
        ("/recommendations/u?k=ten", "'k'"),
        ("/recommendations/u?fresh=maybe", "'fresh'"),
        ("/recommendations/u?kk=3", "'kk'"),
        ("/recommendations/u?categories=a,,b", "'categories'"),
        ("/recommendations/%E2%80%8Bu", "'user_id'"),
        ("/items/horror-0/similar?fresh=true", "'fresh'"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    api_worker: WorkerProcess, path: str, named: str
) -> None:
    status, doc = await _get(api_worker, path)
    assert status == 400 and named in doc["error"]


async def test_similar_items_are_nearest_the_item_and_an_unknown_one_is_a_404(
    api_worker: WorkerProcess,
) -> None:
    status, doc = await _get(api_worker, "/items/horror-0/similar?k=3")
    assert status == 200 and len(doc["items"]) == 3
    assert "horror-0" not in {i["item_id"] for i in doc["items"]}
    assert [i["category"] for i in doc["items"]].count("horror") >= 2
    status, doc = await _get(api_worker, "/items/no-such-item/similar")
    assert status == 404 and "no-such-item" in doc["error"]


async def test_health_readiness_metrics_and_the_openapi_document_share_the_port(
    api_worker: WorkerProcess,
) -> None:
    assert await _get(api_worker, "/healthz") == (200, {"status": "alive"})
    status, ready = await _get(api_worker, "/readyz")
    assert status == 200 and ready["ready"] is True and ready["failing"] == {}
    status, text = await _get(api_worker, "/metrics")
    assert status == 200 and "streamrec_api_request_seconds_count" in text
    status, document = await _get(api_worker, "/openapi.json")
    assert status == 200 and "/recommendations/{user_id}" in document["paths"]


def test_the_api_honours_its_openapi_document_and_never_answers_5xx(
    api_worker: WorkerProcess,
) -> None:
    """schemathesis over every operation: no 5xx, status codes, content types and bodies
    as documented. (Its pytest plugin does not run under this pytest; its strategies do.)"""
    schema = schemathesis.openapi.from_url(_url(api_worker, "/openapi.json"))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate()

        check()
