"""What a model upgrade costs a running worker: the catalogue re-embedded in the background.

    python -m load_tests upgrade [--items 1682] [--rate 50] [--out results/upgrade.json]

Starts a local broker, a tritonserver polling a scratch copy of the model repository and
one worker; seeds `--items` MovieLens movies; sends MovieLens ratings as events at `--rate`
per second throughout; after a steady stretch publishes a new fusion version. Reports the
re-embed's items/s, the time from publishing to Triton serving it and to the worker's
switch, and the answers before, during and after the re-embed: how many, their latency
(event sent -> answer received) and the model_version they name (it must change once).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from load_tests.targets import follow_answers, seed_catalogue, wait_indexed
from models import fusion
from models.publish import publish_new_fusion, scratch_repository
from worker.kafka import all_topics, client_kwargs, ensure_topics, prefixed_topics
from worker.movielens import load_ratings
from worker.settings import Settings, load_settings
from worker.stack import LocalStack
from worker.stack.worker_process import WorkerProcess
from worker.triton import TritonClient

STEADY_S = 8.0  # traffic before publishing, and after the switch


async def _send_events(
    settings: Settings, items: int, rate: float, stop: asyncio.Event, sent: dict[str, float]
) -> None:
    """MovieLens ratings of the seeded movies as events, `rate` per second, open loop."""
    ratings = [r for r in load_ratings() if int(r.item_id) <= items]
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        started, n = time.monotonic(), 0
        while not stop.is_set():
            r = ratings[n % len(ratings)]
            event_id = f"u{n}"
            event = {"event_id": event_id, "user_id": r.user_id, "item_id": r.item_id,
                     "type": "rating", "value": r.rating, "ts": time.time()}  # fmt: skip
            sent[event_id] = time.time()
            await producer.send(settings.events_topic, orjson.dumps(event), key=r.user_id.encode())
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    finally:
        await producer.stop()


async def _wait(check: Any, timeout_s: float, what: str) -> float:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)
    return time.time()


def _phase(
    answers: Sequence[tuple[float, dict[str, Any]]], sent: dict[str, float]
) -> dict[str, Any]:
    latencies = [
        received - sent[doc["event_ids"][0]]
        for received, doc in answers
        if doc["event_ids"] and doc["event_ids"][0] in sent
    ]
    ms = np.array(latencies) * 1000.0 if latencies else np.zeros(1)
    return {
        "answers": len(answers),
        "latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1),
        },
        "model_versions": sorted(
            {doc["model_version"].split("+fusion:")[-1] for _, doc in answers}
        ),
    }


async def _upgrade(
    settings: Settings, worker: WorkerProcess, repo: Path, rate: float, items: int
) -> dict[str, Any]:
    client = TritonClient(settings.triton_url or "", version_ttl_s=0.0)
    old = await client.versions()
    stop, sent, answers = asyncio.Event(), dict[str, float](), list[tuple[float, dict[str, Any]]]()

    def answered(now: float, doc: dict[str, Any]) -> None:
        answers.append((now, doc))

    tasks = [asyncio.create_task(_send_events(settings, items, rate, stop, sent)),
             asyncio.create_task(follow_answers(settings, stop, answered))]  # fmt: skip
    try:
        await asyncio.sleep(STEADY_S)
        published_at = time.time()
        version = await asyncio.to_thread(publish_new_fusion, repo)

        async def served() -> bool:
            return (await client.versions()).item_space != old.item_space

        async def switched() -> bool:
            return worker.metric("streamrec_item_space_switches_total") == 1.0

        served_at = await _wait(served, 120, "serving the new fusion")
        switched_at = await _wait(switched, 1800, "the switch")
        await asyncio.sleep(STEADY_S)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()
    by_time = sorted(answers, key=lambda a: a[1]["generated_at"])
    labels = [doc["model_version"] for _, doc in by_time]
    changes = sum(1 for a, b in itertools.pairwise(labels) if a != b)
    return {
        "items": items,
        "events_per_second": rate,
        "fusion": {"from": old.item_space.split("fusion:")[-1], "to": str(version)},
        "published_to_served_s": round(served_at - published_at, 2),
        "served_to_switched_s": round(switched_at - served_at, 2),
        "reembed_items": worker.metric("streamrec_reembed_items_total"),
        "reembed_items_per_second": round(
            worker.metric("streamrec_reembed_items_per_second") or 0, 1
        ),
        "model_version_changes": changes,
        "before": _phase([a for a in answers if a[0] < published_at], sent),
        "during": _phase([a for a in answers if published_at <= a[0] < switched_at], sent),
        "after": _phase([a for a in answers if a[0] >= switched_at], sent),
    }


def run(items: int, rate: float, work: Path) -> dict[str, Any]:
    repo, weights = scratch_repository(work / "models")
    # The export of the new version reads its weights from here (this process only).
    fusion.WEIGHTS_DIR = weights
    base = load_settings(
        data_dir=work / "data", stack_dir=work / "stack", metrics_port=0, triton_repo=repo,
        reembed_check_interval_s=1.0,
    )  # fmt: skip
    with LocalStack(base) as settings:
        settings = settings.model_copy(update=prefixed_topics(f"upgrade-{uuid.uuid4().hex[:8]}"))
        asyncio.run(ensure_topics(settings, all_topics(settings)))
        worker = WorkerProcess(settings, work / "worker.log").start()
        try:
            asyncio.run(seed_catalogue(settings, items))
            wait_indexed(lambda: worker.metric("streamrec_items_indexed_total"), items, None)
            return asyncio.run(_upgrade(settings, worker, repo, rate, items))
        finally:
            worker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests upgrade", description=__doc__)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--out", type=Path, default=Path("results/upgrade.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="upgrade-bench-") as tmp:
        report = run(args.items, args.rate, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["model_version_changes"] == 1 else 1
