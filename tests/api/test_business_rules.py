"""Business rules on the real stack: item fields and the item-rules topic, seen through the
worker's answers and its read API."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from api.test_app import _answered, _get, _stored, until
from fixtures.kafka import wait_until

from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


async def _rule(
    producer: AIOKafkaProducer, settings: Settings, item: str, rule: dict | None
) -> None:
    value = None if rule is None else orjson.dumps({"item_id": item, **rule})
    await producer.send_and_wait(settings.item_rules_topic, value, key=item.encode())


def _ids(doc: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in doc["items"]]


async def test_an_unavailable_item_leaves_stored_and_new_lists_at_once_until_the_rule_goes(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    answer = await _answered(producer, api_settings, "rules-1", "horror-0")
    stored = await _stored(api_worker, "rules-1", answer["event_id"])
    target = next(i["item_id"] for i in stored["items"] if i["category"] == "horror")
    await _rule(producer, api_settings, target, {"available": False})

    read = await until(api_worker, "/recommendations/rules-1", lambda d: target not in _ids(d))
    assert target not in _ids(read), "a stored list is filtered when it is read"
    fresh = await _get(api_worker, "/recommendations/rules-1?fresh=true&k=20")
    assert target not in _ids(fresh[1])
    again = await _answered(producer, api_settings, "rules-1", "horror-3", etype="click")
    assert target not in [i["item_id"] for i in again["items"]]

    await _rule(producer, api_settings, target, None)  # the tombstone: its own fields again
    back = await until(
        api_worker, "/recommendations/rules-1?fresh=true&k=20", lambda d: target in _ids(d)
    )
    assert target in _ids(back)


async def test_an_item_past_its_expiry_is_never_recommended(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    text = "A vampire hunts travellers lost in a haunted castle at night"
    items = {
        "horror-expired": {"expires_at": time.time() - 1},
        "horror-fresh": {"expires_at": time.time() + 3600},
    }
    before = api_worker.metric("streamrec_items_indexed_total") or 0
    for item_id, fields in items.items():
        doc = {"item_id": item_id, "text": text, "category": "horror", **fields}
        await producer.send_and_wait(
            api_settings.items_topic, orjson.dumps(doc), key=item_id.encode()
        )
    await wait_until(
        lambda: api_worker.metric("streamrec_items_indexed_total") == before + 2, timeout_s=30
    )
    await _answered(producer, api_settings, "rules-4", "horror-1")
    _, doc = await _get(api_worker, "/recommendations/rules-4?fresh=true&k=20&categories=horror")
    assert "horror-fresh" in _ids(doc) and "horror-expired" not in _ids(doc)
    _, similar = await _get(api_worker, "/items/horror-fresh/similar?k=20")
    assert "horror-expired" not in _ids(similar)


async def test_a_boost_lifts_an_item_to_the_top_of_the_list(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    await _answered(producer, api_settings, "rules-2", "comedy-0")
    path = "/recommendations/rules-2?fresh=true&categories=comedy"
    _, plain = await _get(api_worker, path)
    # The lowest listed item with a positive score (a boost multiplies: 0 stays 0).
    last = [i for i in plain["items"][1:] if i["score"] > 0][-1]["item_id"]
    await _rule(producer, api_settings, last, {"boost": 50})
    boosted = await until(api_worker, path, lambda d: _ids(d)[0] == last)
    assert _ids(boosted)[0] == last
    await _rule(producer, api_settings, last, None)


async def test_pins_take_their_slot_in_every_list_or_in_their_category_only(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    await _answered(producer, api_settings, "rules-3", "horror-2")
    await _rule(producer, api_settings, "cooking-3", {"pinned": {"slot": 2}})
    await _rule(producer, api_settings, "comedy-3", {"pinned": {"slot": 1, "category": "comedy"}})
    try:
        path = "/recommendations/rules-3?fresh=true"
        anywhere = await until(api_worker, path, lambda d: _ids(d)[1:2] == ["cooking-3"])
        assert _ids(anywhere)[1] == "cooking-3"
        assert anywhere["items"][1]["reasons"][0] == {"kind": "pinned"}
        assert "comedy-3" not in _ids(anywhere)[:1], "a category pin stays in its category"
        # The two rules may reach the worker in different polls of the rules topic.
        in_comedy = path + "&categories=comedy"
        comedy = await until(api_worker, in_comedy, lambda d: _ids(d)[:1] == ["comedy-3"])
        assert _ids(comedy)[0] == "comedy-3"
        assert "cooking-3" not in _ids(comedy), "a global pin does not break a category filter"
    finally:
        await _rule(producer, api_settings, "cooking-3", None)
        await _rule(producer, api_settings, "comedy-3", None)
