"""The whole path on real parts: Tansu broker, tritonserver, the worker process, Qdrant Edge."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures.kafka import TopicReader, wait_until
from PIL import Image, ImageDraw

from worker.kafka import DLQ_ERROR_HEADER, DLQ_STAGE_HEADER
from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess, scrape_metrics

pytestmark = pytest.mark.integration

SPACE = [
    "Rocket launch to Mars: astronauts travel through deep space",
    "Alien starship battle in a distant galaxy",
    "Space station crew repairs a satellite in orbit",
    "Astronaut lost on the Moon tries to return to Earth",
    "Interstellar voyage through a black hole to find a new planet",
    "Galactic empire and rebel pilots fight among the stars",
]
COOKING = [
    "Italian pasta recipes: homemade tagliatelle with tomato sauce",
    "Baking bread at home: sourdough, flour and a hot oven",
    "Chef's guide to grilling steak and roasted vegetables",
    "Easy dessert recipes: chocolate cake and vanilla cookies",
    "Street food cooking: tacos, spicy salsa and fresh tortillas",
    "Soup kitchen: vegetable broth, lentils and slow cooking",
]
FOOTBALL = [
    "Football world cup final: the striker scores a late goal",
    "Soccer club transfer news: midfielder signs a new contract",
    "Penalty shootout drama in the champions league semi-final",
]


def _png(color: tuple[int, int, int]) -> str:
    img = Image.new("RGB", (96, 96), (250, 250, 250))
    ImageDraw.Draw(img).ellipse((16, 16, 80, 80), fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def catalogue() -> dict[str, dict[str, object]]:
    items: dict[str, dict[str, object]] = {}
    for genre, texts in (("space", SPACE), ("cooking", COOKING), ("football", FOOTBALL)):
        for n, text in enumerate(texts):
            item: dict[str, object] = {
                "item_id": f"{genre}-{n}",
                "title": text.split(":")[0],
                "text": text,
                "category": genre,
                "tags": [genre],
            }
            if genre == "football":
                # Images only where no assertion reads semantics: the image projection is
                # untrained (MovieLens has no images), so similar drawings would pull items
                # together whatever their text says.
                item["image_b64"] = _png((60 * n, 80, 160))
            items[str(item["item_id"])] = item
    items["poster-only"] = {"item_id": "poster-only", "image_b64": _png((200, 30, 30))}
    return items


async def _metrics_once(
    worker: WorkerProcess, name: str, value: float, timeout_s: float = 5.0
) -> dict[str, float]:
    """The worker's metrics once `name` reaches `value` (or the last scrape at the deadline)."""
    deadline = time.monotonic() + timeout_s
    metrics = scrape_metrics(worker.metrics_port)
    while metrics.get(name) != value and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        metrics = scrape_metrics(worker.metrics_port)
    return metrics


async def _send(producer: AIOKafkaProducer, topic: str, key: str | None, value: object) -> None:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    await producer.send_and_wait(topic, raw, key=key.encode() if key is not None else None)


def _event(user: str, item: str, etype: str = "click") -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "user_id": user,
        "item_id": item,
        "type": etype,
        "ts": time.time(),
    }


async def _load_catalogue(
    producer: AIOKafkaProducer, settings: Settings, worker: WorkerProcess
) -> dict[str, dict[str, object]]:
    items = catalogue()
    for item_id, item in items.items():
        await _send(producer, settings.items_topic, item_id, item)
    await wait_until(
        lambda: worker.metric("streamrec_items_indexed_total") == len(items), timeout_s=60
    )
    return items


def _answers(event_id: str):
    def match(record: object) -> bool:
        doc = orjson.loads(record.value)  # type: ignore[attr-defined]
        return event_id in doc["event_ids"]

    return match


async def test_each_event_yields_fresh_recommendations_that_follow_the_user(
    producer: AIOKafkaProducer, stack_settings: Settings, worker_process: WorkerProcess
) -> None:
    items = await _load_catalogue(producer, stack_settings, worker_process)
    recs = await TopicReader(
        stack_settings.kafka_bootstrap_servers or "", stack_settings.recommendations_topic
    ).start()
    try:
        interacted: list[str] = []
        answers: list[dict] = []
        for item_id in ("space-0", "space-1", "cooking-0", "cooking-1", "cooking-2", "cooking-3"):
            event = _event("alice", item_id)
            sent = time.monotonic()
            await _send(producer, stack_settings.events_topic, "alice", event)
            record = await recs.wait_for(_answers(str(event["event_id"])), timeout_s=10)
            assert time.monotonic() - sent < 10
            interacted.append(item_id)
            doc = orjson.loads(record.value)
            assert record.key == b"alice"
            assert doc["user_id"] == "alice" and doc["event_id"] == event["event_id"]
            assert doc["model_version"] and doc["timings_ms"]["triton"] >= 0
            ids = [i["item_id"] for i in doc["items"]]
            assert len(ids) == min(stack_settings.recommendations_k, len(items) - len(interacted))
            assert set(ids) <= set(items), "only catalogue items are recommended"
            assert not set(ids) & set(interacted), "already-seen items are excluded"
            answers.append(doc)

        after_space = [i["item_id"] for i in answers[1]["items"]][:4]
        after_cooking = [i["item_id"] for i in answers[-1]["items"]][:4]
        assert after_space != after_cooking, "recommendations change after new interactions"
        assert sum(i.startswith("space") for i in after_space) >= 3
        assert sum(i.startswith("cooking") for i in after_cooking) >= 2

        events_in = f'streamrec_messages_in_total{{topic="{stack_settings.events_topic}"}}'
        recs_out = f'streamrec_messages_out_total{{topic="{stack_settings.recommendations_topic}"}}'
        # The worker counts a batch once its publish returns, which can be just after the
        # broker hands the last answer to this test.
        metrics = await _metrics_once(worker_process, recs_out, 6.0)
        assert metrics[events_in] == 6 and metrics[recs_out] == 6
        assert metrics["streamrec_end_to_end_seconds_count"] == 6
        # Six events a few hundred ms apart: a rate far below one a batch would wait for.
        rate = metrics[f'streamrec_arrival_rate{{topic="{stack_settings.events_topic}"}}']
        assert 0.0 < rate < 100.0
        for stage in ("decode", "state", "triton", "qdrant", "save", "publish"):
            assert (
                metrics[f'streamrec_stage_seconds_count{{pipeline="events",stage="{stage}"}}'] >= 1
            )
    finally:
        await recs.stop()


async def test_malformed_messages_go_to_the_dlq_and_later_good_ones_still_flow(
    producer: AIOKafkaProducer, stack_settings: Settings, worker_process: WorkerProcess
) -> None:
    s = stack_settings
    bootstrap = s.kafka_bootstrap_servers or ""
    await _load_catalogue(producer, s, worker_process)
    await _send(producer, s.events_topic, "bob", b"{not json")
    await _send(producer, s.events_topic, "bob", {**_event("bob", "space-2"), "type": "poke"})
    await _send(producer, s.items_topic, "bad-item", {"item_id": "bad-item"})
    await _send(
        producer,
        s.items_topic,
        "bad-image",
        {"item_id": "bad-image", "image_b64": base64.b64encode(b"not an image").decode()},
    )
    # A WAV header cut off mid-way, next to a title: the whole item is refused, with a reason.
    await _send(
        producer,
        s.items_topic,
        "bad-audio",
        {
            "item_id": "bad-audio",
            "title": "A song whose file is broken",
            "audio_b64": base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt ").decode(),
        },
    )
    good = _event("bob", "football-0")
    await _send(producer, s.events_topic, "bob", good)

    recs = await TopicReader(bootstrap, s.recommendations_topic).start()
    events_dlq = await TopicReader(bootstrap, s.events_dlq_topic).start()
    items_dlq = await TopicReader(bootstrap, s.items_dlq_topic).start()
    try:
        record = await recs.wait_for(_answers(str(good["event_id"])), timeout_s=10)
        assert orjson.loads(record.value)["items"], "the good event after bad ones is answered"

        def reason(rec: object) -> str:
            return dict(rec.headers)[DLQ_ERROR_HEADER].decode()  # type: ignore[attr-defined]

        not_json = await events_dlq.wait_for(lambda r: r.value == b"{not json", timeout_s=10)
        assert "not valid JSON" in reason(not_json) and not_json.key == b"bob"
        bad_type = await events_dlq.wait_for(lambda r: b"poke" in r.value, timeout_s=10)
        assert "'type' must be one of" in reason(bad_type)

        no_content = await items_dlq.wait_for(lambda r: r.key == b"bad-item", timeout_s=10)
        assert "content field" in reason(no_content)
        bad_image = await items_dlq.wait_for(lambda r: r.key == b"bad-image", timeout_s=20)
        assert dict(bad_image.headers)[DLQ_STAGE_HEADER] == b"embed" and reason(bad_image)
        bad_audio = await items_dlq.wait_for(lambda r: r.key == b"bad-audio", timeout_s=20)
        assert dict(bad_audio.headers)[DLQ_STAGE_HEADER] == b"embed"
        assert reason(bad_audio).startswith("audio: cannot decode WAV")
        assert worker_process.metric("streamrec_items_indexed_total") == len(catalogue())
    finally:
        for reader in (recs, events_dlq, items_dlq):
            await reader.stop()


async def test_tombstone_removes_an_item_from_recommendations(
    producer: AIOKafkaProducer, stack_settings: Settings, worker_process: WorkerProcess
) -> None:
    s = stack_settings
    await _load_catalogue(producer, s, worker_process)
    await _send(producer, s.items_topic, "space-3", None)
    await wait_until(
        lambda: worker_process.metric("streamrec_items_deleted_total") == 1, timeout_s=10
    )
    recs = await TopicReader(s.kafka_bootstrap_servers or "", s.recommendations_topic).start()
    try:
        event = _event("carol", "space-0")
        await _send(producer, s.events_topic, "carol", event)
        record = await recs.wait_for(_answers(str(event["event_id"])), timeout_s=10)
        ids = [i["item_id"] for i in orjson.loads(record.value)["items"]]
        assert "space-3" not in ids and "space-1" in ids
    finally:
        await recs.stop()


async def test_a_restarted_worker_resumes_after_committed_offsets_with_user_state_kept(
    producer: AIOKafkaProducer, stack_settings: Settings, tmp_path: Path
) -> None:
    s = stack_settings
    first = WorkerProcess(s, tmp_path / "worker-1.log").start()
    try:
        await _load_catalogue(producer, s, first)
        before = _event("dave", "space-0")
        await _send(producer, s.events_topic, "dave", before)
        recs = await TopicReader(s.kafka_bootstrap_servers or "", s.recommendations_topic).start()
        await recs.wait_for(_answers(str(before["event_id"])), timeout_s=10)
    finally:
        assert first.stop() == 0, "a clean shutdown commits offsets and flushes the store"

    second = WorkerProcess(s, tmp_path / "worker-2.log").start()
    try:
        after = _event("dave", "space-1")
        await _send(producer, s.events_topic, "dave", after)
        record = await recs.wait_for(_answers(str(after["event_id"])), timeout_s=15)
        ids = {i["item_id"] for i in orjson.loads(record.value)["items"]}
        assert not ids & {"space-0", "space-1"}, "history from before the restart still counts"
        await recs.poll(timeout_s=1.0)
        answered = [orjson.loads(r.value)["event_ids"] for r in recs.records]
        assert answered.count([before["event_id"]]) == 1, "no replay of committed events"
        assert second.metric("streamrec_items_indexed_total") == 0, "catalogue not re-ingested"
    finally:
        second.stop()
        await recs.stop()
