"""Several `python -m worker run` processes in one group on the embedded default store."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fixtures.kafka import TopicReader, wait_until
from test_end_to_end import COOKING, SPACE

from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

# genre -> (items partition, texts): each genre lives on one partition of `items`, so with two
# workers each one embeds only one genre itself.
GENRES = {"space": (0, SPACE), "cooking": (3, COOKING)}
USERS = [f"{genre}-fan-{n}" for genre in GENRES for n in range(6)]
ITEMS_READ = 'streamrec_changelog_records_read_total{{topic="{}"}}'
RECS_OUT = 'streamrec_messages_out_total{{topic="{}"}}'


def _event(user: str, item: str) -> dict[str, object]:
    genre = user.split("-")[0]
    return {
        "event_id": uuid.uuid4().hex,
        "user_id": user,
        "item_id": item,
        "type": "click",
        "ts": time.time(),
        "context": {"categories": [genre]},
    }


async def _load_items(producer: AIOKafkaProducer, s: Settings) -> int:
    count = 0
    for genre, (partition, texts) in GENRES.items():
        for n, text in enumerate(texts):
            item = {"item_id": f"{genre}-{n}", "text": text, "category": genre}
            await producer.send_and_wait(
                s.items_topic, orjson.dumps(item), key=item["item_id"].encode(), partition=partition
            )
            count += 1
    return count


async def _round(
    producer: AIOKafkaProducer, s: Settings, recs: TopicReader, item_n: int
) -> dict[str, list[str]]:
    """Every user clicks their genre's item `item_n`; user -> the answer's items."""
    sent = {user: _event(user, f"{user.split('-')[0]}-{item_n}") for user in USERS}
    for user, event in sent.items():
        await producer.send_and_wait(s.events_topic, orjson.dumps(event), key=user.encode())
    answers: dict[str, list[str]] = {}
    for user, event in sent.items():
        record = await recs.wait_for(
            lambda r, eid=event["event_id"]: eid in orjson.loads(r.value)["event_ids"],
            timeout_s=30,
        )
        answers[user] = [i["item_id"] for i in orjson.loads(record.value)["items"]]
    return answers


async def test_workers_in_one_group_answer_from_the_whole_catalogue_and_keep_users_after_a_kill(
    producer: AIOKafkaProducer, stack_settings: Settings, tmp_path: Path
) -> None:
    s = stack_settings
    workers = [
        WorkerProcess(s.model_copy(update={"data_dir": tmp_path / f"w{n}"}), tmp_path / f"w{n}.log")
        for n in (1, 2)
    ]
    for worker in workers:
        worker.start()
    recs = await TopicReader(s.kafka_bootstrap_servers or "", s.recommendations_topic).start()
    try:
        await asyncio.sleep(2 * s.session_timeout_s)  # both in the group, partitions split
        total = await _load_items(producer, s)
        read = ITEMS_READ.format(s.item_vectors_topic)
        await wait_until(
            lambda: all(w.metric(read) == total for w in workers), timeout_s=60, interval_s=0.2
        )
        indexed = [w.metric("streamrec_items_indexed_total") or 0 for w in workers]
        assert sorted(indexed) == [6, 6], "each genre embedded once, by the owner of its partition"

        first = await _round(producer, s, recs, 0)
        for user, items in first.items():
            genre = user.split("-")[0]
            # The whole genre but the clicked item, whichever worker holds the user.
            assert sorted(items) == sorted(f"{genre}-{n}" for n in range(1, 6)), user
        await _round(producer, s, recs, 1)

        # A new item, embedded by one worker, is pushed by each worker to its own users.
        pushed = RECS_OUT.format(s.recommendations_topic)
        before = [w.metric(pushed) for w in workers]
        item = {"item_id": "space-new", "text": "A comet mission to Jupiter", "category": "space"}
        await producer.send_and_wait(
            s.items_topic, orjson.dumps(item), key=b"space-new", partition=GENRES["space"][0]
        )
        await wait_until(
            lambda: all(w.metric(pushed) != b for w, b in zip(workers, before, strict=True)),
            timeout_s=30,
        )
        await recs.poll(1.0)
        pushes = [
            orjson.loads(r.value)
            for r in recs.records
            if orjson.loads(r.value)["strategy"] == "new_item"
        ]
        users = [p["user_id"] for p in pushes]
        assert users and len(users) == len(set(users)), "each user is pushed by one worker"

        workers[0].send_signal(9)
        workers[0].wait_exit(10)
        third = await _round(producer, s, recs, 2)
        for user, items in third.items():
            genre = user.split("-")[0]
            new = ["space-new"] if genre == "space" else []
            assert sorted(items) == [f"{genre}-{n}" for n in (3, 4, 5)] + new, (
                f"{user}: seen items came back after its partition moved: {items}"
            )
        assert workers[1].metric("streamrec_ready") == 1.0
    finally:
        await recs.stop()
        for worker in workers:
            worker.stop()


async def test_a_worker_restarted_on_a_fresh_disk_answers_a_probe_exactly_as_before(
    producer: AIOKafkaProducer, stack_settings: Settings, tmp_path: Path
) -> None:
    # Fresh disk: catalogue, users and signals all come back from the changelogs; a snapshot
    # is written every second, so the restore loads one and replays the deltas after it.
    s = stack_settings.model_copy(update={"signals_snapshot_interval_s": 1.0})
    first = WorkerProcess(s.model_copy(update={"data_dir": tmp_path / "a"}), tmp_path / "a.log")
    first.start()
    recs = await TopicReader(s.kafka_bootstrap_servers or "", s.recommendations_topic).start()
    try:
        total = await _load_items(producer, s)
        await wait_until(
            lambda: first.metric("streamrec_items_indexed_total") == total, timeout_s=60
        )
        for n in range(3):
            last = await _round_events(producer, s, recs, n)
        await asyncio.sleep(1.5)  # a snapshot, then more deltas after it
        await _round_events(producer, s, recs, 3)
        before = await _probe(producer, s, recs, last)
    finally:
        first.send_signal(9)
        first.wait_exit(10)
    second = WorkerProcess(s.model_copy(update={"data_dir": tmp_path / "b"}), tmp_path / "b.log")
    second.start()
    try:
        after = await _probe(producer, s, recs, last)
        assert _ids(after) == _ids(before)
        # Scores to float noise: Triton batches the probe's users differently each run.
        for user, doc in after.items():
            scores = [i["score"] for i in doc["items"]]  # type: ignore[attr-defined]
            expected = [i["score"] for i in before[user]["items"]]  # type: ignore[attr-defined]
            assert scores == pytest.approx(expected, abs=1e-4)
        assert any(doc["strategy"] == "user_vector" for doc in after.values())
        assert second.metric("streamrec_items_indexed_total") == 0, "nothing re-embedded"
    finally:
        await recs.stop()
        second.stop()


def _ids(answers: dict[str, dict[str, object]]) -> dict[str, tuple[object, ...]]:
    return {
        user: (doc["strategy"], doc["model_version"], [i["item_id"] for i in doc["items"]])  # type: ignore[attr-defined]
        for user, doc in answers.items()
    }


async def _round_events(
    producer: AIOKafkaProducer, s: Settings, recs: TopicReader, item_n: int
) -> dict[str, dict[str, object]]:
    """Every user clicks an item (spread so users overlap in pairs: co-visitation)."""
    sent = {}
    for u, user in enumerate(USERS):
        genre = user.split("-")[0]
        sent[user] = _event(user, f"{genre}-{(u // 2 + item_n) % 6}")
        await producer.send_and_wait(s.events_topic, orjson.dumps(sent[user]), key=user.encode())
    for event in sent.values():
        await recs.wait_for(
            lambda r, eid=event["event_id"]: eid in orjson.loads(r.value)["event_ids"],
            timeout_s=30,
        )
    return sent


async def _probe(
    producer: AIOKafkaProducer, s: Settings, recs: TopicReader, events: dict[str, dict[str, object]]
) -> dict[str, dict[str, object]]:
    """Redeliver each user's last event: answered again from the state, which it leaves
    unchanged (its id is remembered). User -> the answer without its timestamps."""
    start = len(recs.records)
    for user, event in events.items():
        await producer.send_and_wait(s.events_topic, orjson.dumps(event), key=user.encode())
    answers: dict[str, dict[str, object]] = {}
    for user, event in events.items():
        record = await recs.wait_for(
            lambda r, eid=event["event_id"]: (
                recs.records.index(r) >= start and eid in orjson.loads(r.value)["event_ids"]
            ),
            timeout_s=30,
        )
        doc = orjson.loads(record.value)
        answers[user] = {k: doc[k] for k in ("items", "strategy", "model_version")}
    return answers
