"""Do a worker's answers survive a restart on an empty disk? Measured on MovieLens state.

    python -m load_tests restart [--ratings 20000] [--probes 200] [--out results/restart.json]

Starts a local broker and tritonserver and one worker; seeds the MovieLens catalogue; sends
the first `--ratings` ratings in time order (shifted to end a minute ago) as `user-events`;
then probes: for `--probes` users, their last event is sent again, one at a time (a
redelivery: answered from the state, which it leaves unchanged). The worker is killed
(SIGKILL) and a new one started on an empty data directory, restoring catalogue, users and
signals from the changelogs; the same probes again. Reports how many answers are identical
(items and order), how many differ only among items of exactly equal score, the largest
score difference, and the restore times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from load_tests.targets import seed_catalogue, wait_indexed
from worker.kafka import all_topics, client_kwargs, ensure_topics, prefixed_topics
from worker.movielens import load_ratings
from worker.settings import Settings, load_settings
from worker.stack import LocalStack
from worker.stack.answers import answer_to
from worker.stack.worker_process import WorkerProcess

MOVIELENS_ITEMS = 1682


def _events(ratings: int) -> list[tuple[str, bytes]]:
    chosen = load_ratings()[:ratings]
    shift = time.time() - 60.0 - chosen[-1].ts
    return [
        (
            r.user_id,
            orjson.dumps(
                {
                    "event_id": f"r{n}",
                    "user_id": r.user_id,
                    "item_id": r.item_id,
                    "type": "rating",
                    "value": r.rating,
                    "ts": r.ts + shift,
                }
            ),
        )
        for n, r in enumerate(chosen)
    ]


async def _send_all(settings: Settings, events: Sequence[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5)
    await producer.start()
    try:
        pending = [
            await producer.send(settings.events_topic, value, key=user.encode())
            for user, value in events
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _probe(settings: Settings, probes: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """Each probe sent alone and its answer awaited: batches of one, the same both times."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await consumer.start()
    await producer.start()
    answers: dict[str, Any] = {}
    try:
        # Past every earlier answer first (read, not sought: some brokers answer ListOffsets
        # wrongly), so a probe's answer is the one that comes after it.
        topic = settings.recommendations_topic
        parts = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if parts:
                break
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        idle = 0
        while idle < 3:
            idle = 0 if await consumer.getmany(timeout_ms=300, max_records=10_000) else idle + 1
        for user, value in probes:
            event_id = orjson.loads(value)["event_id"]
            await producer.send_and_wait(settings.events_topic, value, key=user.encode())
            answers[user] = await _answer_to(consumer, event_id)
    finally:
        await producer.stop()
        await consumer.stop()
    return answers


async def _answer_to(consumer: AIOKafkaConsumer, event_id: str) -> Any:
    doc = await answer_to(consumer, event_id)
    if doc is None:
        raise RuntimeError(f"no answer to probe {event_id}")
    return [(i["item_id"], i["score"]) for i in doc["items"]]


def _compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    differ = [u for u in before if [i for i, _ in before[u]] != [i for i, _ in after[u]]]
    diffs = [
        abs(a - b) for u in before for (_, a), (_, b) in zip(before[u], after[u], strict=False)
    ]
    return {
        "probes": len(before),
        "identical_lists": len(before) - len(differ),
        # Same scores position by position, items differing only among equal scores (the
        # fresh store hands tied hits back in its own order).
        "differing_only_in_ties": sum(
            1 for u in differ if [s for _, s in before[u]] == [s for _, s in after[u]]
        ),
        "max_score_difference": round(max(diffs, default=0.0), 6),
        "differing": {u: {"before": before[u], "after": after[u]} for u in differ[:5]},
    }


def _wait_answered(worker: WorkerProcess, settings: Settings, count: int) -> float:
    started = time.monotonic()
    name = f'streamrec_messages_in_total{{topic="{settings.events_topic}"}}'
    while (worker.metric(name) or 0.0) < count:
        if worker.problem():
            raise RuntimeError(worker.problem())
        time.sleep(0.5)
    time.sleep(2.0)  # the last batches' deliveries
    return time.monotonic() - started


def _restores(worker: WorkerProcess) -> dict[str, float | None]:
    return {
        state: worker.metric(f'streamrec_restore_seconds{{state="{state}"}}')
        for state in ("signals", "catalogue", "users")
    }


def run(ratings: int, probes: int, work: Path) -> dict[str, Any]:
    base = load_settings(
        data_dir=work / "a", stack_dir=work / "stack", metrics_port=0,
        signals_snapshot_interval_s=10.0,
    )  # fmt: skip
    with LocalStack(base) as settings:
        settings = settings.model_copy(update=prefixed_topics(f"restart-{uuid.uuid4().hex[:8]}"))
        asyncio.run(ensure_topics(settings, all_topics(settings)))
        first = WorkerProcess(settings, work / "a.log").start()
        try:
            asyncio.run(seed_catalogue(settings, MOVIELENS_ITEMS))
            wait_indexed(
                lambda: first.metric("streamrec_items_indexed_total"), MOVIELENS_ITEMS, None
            )
            events = _events(ratings)
            asyncio.run(_send_all(settings, events))
            replay_s = _wait_answered(first, settings, len(events))
            last = {user: value for user, value in events}
            chosen = random.Random(7).sample(sorted(last), min(probes, len(last)))
            picked = [(user, last[user]) for user in chosen]
            before = asyncio.run(_probe(settings, picked))
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait_exit(10.0)
        started = time.monotonic()
        fresh = settings.model_copy(update={"data_dir": work / "b"})
        second = WorkerProcess(fresh, work / "b.log").start()
        try:
            ready_s = time.monotonic() - started
            after = asyncio.run(_probe(settings, picked))
            restores = _restores(second)
        finally:
            second.stop()
    return {
        "ratings": len(events),
        "users": len(last),
        "replay_s": round(replay_s, 1),
        "ready_after_restart_s": round(ready_s, 2),
        "restore_s": restores,
        **_compare(before, after),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests restart", description=__doc__)
    parser.add_argument("--ratings", type=int, default=20_000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/restart.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="restart-probe-") as tmp:
        report = run(args.ratings, args.probes, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    same = report["identical_lists"] + report["differing_only_in_ties"]
    return 0 if same == report["probes"] else 1
