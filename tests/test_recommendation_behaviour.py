"""What users see, end to end on real parts (broker, tritonserver, worker process, Qdrant
Edge): likes pull recommendations toward a genre, dislikes push them away, a brand-new user
gets something after one event, and a new item reaches the users it suits."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures.kafka import TopicReader, wait_until

from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

GENRES = {
    "space": [
        "Rocket launch to Mars: astronauts travel through deep space",
        "Alien starship battle in a distant galaxy",
        "Space station crew repairs a satellite in orbit",
        "Astronaut lost on the Moon tries to return to Earth",
        "Interstellar voyage through a black hole to find a new planet",
    ],
    "cooking": [
        "Italian pasta recipes: homemade tagliatelle with tomato sauce",
        "Baking bread at home: sourdough, flour and a hot oven",
        "Chef's guide to grilling steak and roasted vegetables",
        "Easy dessert recipes: chocolate cake and vanilla cookies",
        "Street food cooking: tacos, spicy salsa and fresh tortillas",
    ],
    "football": [
        "Football world cup final: the striker scores a late goal",
        "Soccer club transfer news: midfielder signs a new contract",
        "Penalty shootout drama in the champions league semi-final",
    ],
}
TOP = 4


def catalogue() -> dict[str, dict[str, object]]:
    return {
        f"{genre}-{n}": {"item_id": f"{genre}-{n}", "text": text, "category": genre}
        for genre, texts in GENRES.items()
        for n, text in enumerate(texts)
    }


async def _send(producer: AIOKafkaProducer, topic: str, key: str, value: object) -> None:
    await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())


class Session:
    """Sends one user's events and waits for the recommendation answering each."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, recs: TopicReader) -> None:
        self.producer, self.settings, self.recs = producer, settings, recs

    async def event(self, user: str, item: str, etype: str = "click") -> dict[str, Any]:
        event_id = uuid.uuid4().hex
        doc = {"event_id": event_id, "user_id": user, "item_id": item, "type": etype}
        await _send(self.producer, self.settings.events_topic, user, {**doc, "ts": time.time()})
        record = await self.recs.wait_for(
            lambda r: event_id in orjson.loads(r.value)["event_ids"], timeout_s=15
        )
        return orjson.loads(record.value)  # type: ignore[no-any-return]


def top(answer: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in answer["items"][:TOP]]


def share(answer: dict[str, Any], genre: str) -> int:
    return sum(item_id.startswith(genre) for item_id in top(answer))


async def _start(
    producer: AIOKafkaProducer, settings: Settings, worker: WorkerProcess
) -> tuple[Session, TopicReader]:
    items = catalogue()
    for item_id, item in items.items():
        await _send(producer, settings.items_topic, item_id, item)
    await wait_until(
        lambda: worker.metric("streamrec_items_indexed_total") == len(items), timeout_s=60
    )
    recs = await TopicReader(
        settings.kafka_bootstrap_servers or "", settings.recommendations_topic
    ).start()
    return Session(producer, settings, recs), recs


async def test_likes_pull_toward_a_genre_and_dislikes_push_away(
    producer: AIOKafkaProducer, stack_settings: Settings, worker_process: WorkerProcess
) -> None:
    session, recs = await _start(producer, stack_settings, worker_process)
    try:
        before = await session.event("mia", "cooking-0")
        await session.event("mia", "space-0", "like")
        after_likes = await session.event("mia", "space-1", "like")
        assert share(after_likes, "space") > share(before, "space")
        assert share(after_likes, "space") >= TOP - 1

        # Same history, then the same item disliked by one user and merely viewed by another.
        answers = {}
        for user, etype in (("leo", "dislike"), ("max", "view")):
            await session.event(user, "space-0")
            await session.event(user, "cooking-0")
            answers[etype] = await session.event(user, "space-3", etype)
        assert share(answers["dislike"], "space") < share(answers["view"], "space")
        assert share(answers["dislike"], "cooking") > share(answers["view"], "cooking")
        for answer in (after_likes, *answers.values()):
            assert answer["strategy"] == "user_vector"
    finally:
        await recs.stop()


async def test_a_brand_new_user_gets_recommendations_after_one_event(
    producer: AIOKafkaProducer, stack_settings: Settings, worker_process: WorkerProcess
) -> None:
    session, recs = await _start(producer, stack_settings, worker_process)
    try:
        for user in ("ann", "bo", "cy"):
            await session.event(user, "football-0")

        known_item = await session.event("new-1", "cooking-2")
        assert known_item["strategy"] == "user_vector" and len(known_item["items"]) >= TOP
        # An item the catalogue does not have (yet): nothing to embed, so trending it is.
        unknown_item = await session.event("new-2", "not-in-the-catalogue")
        assert unknown_item["strategy"] == "trending"
        assert top(unknown_item)[0] == "football-0", "the most consumed item leads"
        assert set(top(unknown_item)) <= set(catalogue())
    finally:
        await recs.stop()


async def test_a_new_item_is_pushed_to_the_nearest_users_only(
    producer: AIOKafkaProducer, stack_settings: Settings, tmp_path: Path
) -> None:
    # One user per item: the push must go to the user nearest the new item.
    s = stack_settings.model_copy(update={"fanout_users_per_item": 1})
    with WorkerProcess(s, tmp_path / "worker.log") as worker:
        session, recs = await _start(producer, s, worker)
        try:
            for item in ("space-0", "space-1", "space-2"):
                await session.event("astro", item, "like")
            for item in ("cooking-0", "cooking-1", "cooking-2"):
                await session.event("chef", item, "like")

            new_item = "space-new"
            text = "Astronauts build a base on a comet far beyond the orbit of Mars"
            await _send(producer, s.items_topic, new_item, {"item_id": new_item, "text": text})
            push = await recs.wait_for(
                lambda r: orjson.loads(r.value).get("trigger_item_ids") == [new_item],
                timeout_s=15,
            )
            doc = orjson.loads(push.value)
            assert push.key == b"astro" and doc["strategy"] == "new_item"
            assert doc["event_id"] is None and doc["event_ids"] == []
            assert new_item in top(doc)
            await recs.poll(timeout_s=1.0)
            pushed_to = [r.key for r in recs.records if orjson.loads(r.value)["event_ids"] == []]
            assert pushed_to == [b"astro"]
        finally:
            await recs.stop()
