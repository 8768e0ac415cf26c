"""Erasure on the real stack: a `forget` event or a tombstone deletes what the worker holds
for the user, confirms it, and a replay of the user's old events rebuilds nothing."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from api.test_app import _answered, _get, _stored
from fixtures.kafka import TopicReader, wait_until

from worker.erasure import user_hash
from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


async def _confirmation(settings: Settings, user: str) -> dict:
    reader = await TopicReader(
        settings.kafka_bootstrap_servers or "", settings.user_erasures_topic
    ).start()
    try:
        record = await reader.wait_for(lambda r: r.key == user_hash(user).encode(), timeout_s=15)
    finally:
        await reader.stop()
    return orjson.loads(record.value)


async def _last_value(settings: Settings, topic: str, user: str) -> bytes | None:
    """The latest record of `user`'s key on a topic (None: a tombstone)."""
    reader = await TopicReader(settings.kafka_bootstrap_servers or "", topic).start()
    try:
        await reader.wait_for(lambda r: r.key == user.encode() and r.value is None, timeout_s=10)
        return [r.value for r in reader.records if r.key == user.encode()][-1]
    finally:
        await reader.stop()


async def test_forget_deletes_the_user_and_old_events_replayed_rebuild_nothing(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    s, user = api_settings, f"gdpr-{uuid.uuid4().hex[:6]}"
    old = [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": user,
            "item_id": item,
            "type": "like",
            "ts": time.time(),
        }
        for item in ("horror-0", "comedy-1")
    ]
    for event in old:
        await producer.send_and_wait(s.events_topic, orjson.dumps(event), key=user.encode())
    last = await _answered(producer, s, user, "cooking-2", etype="click")
    assert (await _stored(api_worker, user, last["event_id"]))["cold_start"] is False

    forget = {"event_id": "erase-1", "user_id": user, "type": "forget", "ts": time.time()}
    await producer.send_and_wait(s.events_topic, orjson.dumps(forget), key=user.encode())
    confirmed = await _confirmation(s, user)
    assert confirmed["event_id"] == "erase-1" and "user_state" in confirmed["deleted"]
    assert await _last_value(s, s.user_state_topic, user) is None, "state changelog tombstone"
    assert await _last_value(s, s.recommendations_topic, user) is None, "latest list tombstone"
    _, read = await _get(api_worker, f"/recommendations/{user}")
    assert read["cold_start"] is True and read["strategy"] == "trending"

    erased_before = api_worker.metric("streamrec_events_erased_total") or 0
    for event in old:  # a replay of the old events
        await producer.send_and_wait(s.events_topic, orjson.dumps(event), key=user.encode())
    await wait_until(
        lambda: api_worker.metric("streamrec_events_erased_total") == erased_before + 2,
        timeout_s=15,
    )
    _, read = await _get(api_worker, f"/recommendations/{user}")
    assert read["cold_start"] is True, "old events rebuild nothing"

    again = await _answered(producer, s, user, "horror-3")  # sent again, after the erasure
    stored = await _stored(api_worker, user, again["event_id"])
    named = {r["item_id"] for i in stored["items"] for r in i["reasons"] if "item_id" in r}
    assert named <= {"horror-3"}, "only what the user sent again is known"
    assert user not in api_worker.log_path.read_text(), "no user id in the worker's log"


async def test_a_tombstone_on_user_events_erases_the_user(
    producer: AIOKafkaProducer, api_settings: Settings, api_worker: WorkerProcess
) -> None:
    s, user = api_settings, f"gdpr-{uuid.uuid4().hex[:6]}"
    await _answered(producer, s, user, "comedy-0")
    await producer.send_and_wait(s.events_topic, None, key=user.encode())
    confirmed = await _confirmation(s, user)
    assert confirmed["event_id"] is None
    _, read = await _get(api_worker, f"/recommendations/{user}")
    assert read["cold_start"] is True
