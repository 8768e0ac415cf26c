"""The read API under load while the stream runs: GET /recommendations/{user_id} latency.

    python -m load_tests api [--reads 500] [--events 200] [--duration 30] [--items 1682]
                             [--out results/api_load.json]

Starts a local broker, a tritonserver and one worker; seeds `--items` MovieLens movies;
sends MovieLens ratings as events at `--events` per second (open loop) and, after a warm-up
that gives their users stored lists, reads at `--reads` per second (open loop: each read is
timed from when it was due, so a stalled server shows as latency, not as fewer reads).
Reads go to users who sent events (90%) and to unknown users (10%: the cold-start list).
Reports the reads' latency percentiles and status codes, the events' answer latency, and
the worker's CPU per event and per read (from /proc) over the measured stretch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from load_tests.histogram import LatencyHistogram
from load_tests.procfs import tree_cpu_s
from load_tests.targets import follow_answers, seed_catalogue, wait_indexed
from worker.kafka import all_topics, client_kwargs, ensure_topics, prefixed_topics
from worker.movielens import load_ratings
from worker.settings import Settings, load_settings
from worker.stack import LocalStack
from worker.stack.worker_process import WorkerProcess

WARMUP_S = 5.0
KNOWN_SHARE = 0.9


class Traffic:
    """Events sent (id -> send time), answer latency, the users who sent events."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.users: list[str] = []
        self.answers = LatencyHistogram()
        self.measuring = False


async def send_events(
    settings: Settings, items: int, rate: float, stop: asyncio.Event, traffic: Traffic
) -> None:
    ratings = [r for r in load_ratings() if int(r.item_id) <= items]
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    seen: set[str] = set()
    try:
        started, n = time.monotonic(), 0
        while not stop.is_set():
            r = ratings[n % len(ratings)]
            event = {"event_id": f"e{n}", "user_id": r.user_id, "item_id": r.item_id,
                     "type": "rating", "value": r.rating, "ts": time.time()}  # fmt: skip
            traffic.sent[f"e{n}"] = time.time()
            await producer.send(settings.events_topic, orjson.dumps(event), key=r.user_id.encode())
            if r.user_id not in seen:
                seen.add(r.user_id)
                traffic.users.append(r.user_id)
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    finally:
        await producer.stop()


def on_answer(traffic: Traffic) -> Callable[[float, dict[str, Any]], None]:
    def record(now: float, doc: dict[str, Any]) -> None:
        for event_id in doc["event_ids"]:
            sent = traffic.sent.pop(event_id, None)
            if sent is not None and traffic.measuring:
                traffic.answers.record_s(now - sent)

    return record


async def read_api(
    port: int, rate: float, duration_s: float, traffic: Traffic, seed: int
) -> dict[str, Any]:
    """Open-loop reads for `duration_s`: latency from each read's due time."""
    rng = random.Random(seed)
    latency, statuses = LatencyHistogram(), Counter[str]()
    connector = aiohttp.TCPConnector(limit=256)
    base = f"http://127.0.0.1:{port}/recommendations/"

    async def one(session: aiohttp.ClientSession, user: str, due: float) -> None:
        try:
            async with session.get(base + user) as response:
                await response.read()
                statuses[str(response.status)] += 1
        except aiohttp.ClientError as exc:
            statuses[type(exc).__name__] += 1
        latency.record_s(time.monotonic() - due)

    async with aiohttp.ClientSession(connector=connector) as session:
        started, n, tasks = time.monotonic(), 0, []
        while (due := started + n / rate) < started + duration_s:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            known = rng.random() < KNOWN_SHARE and traffic.users
            user = rng.choice(traffic.users) if known else f"new-{rng.randrange(10**9)}"
            tasks.append(asyncio.create_task(one(session, user, due)))
            n += 1
        await asyncio.gather(*tasks)
    return {"reads": n, "statuses": dict(statuses), "latency_ms": latency.summary_ms()}


async def measure(
    settings: Settings, worker: WorkerProcess, args: argparse.Namespace
) -> dict[str, Any]:
    stop, traffic = asyncio.Event(), Traffic()
    background = [
        asyncio.create_task(send_events(settings, args.items, args.events, stop, traffic)),
        asyncio.create_task(follow_answers(settings, stop, on_answer(traffic))),
    ]
    await asyncio.sleep(WARMUP_S)
    pid = worker.pid
    assert pid is not None
    traffic.measuring = True
    cpu_before = tree_cpu_s(pid)
    reads = await read_api(worker.metrics_port, args.reads, args.duration, traffic, args.seed)
    cpu_s = tree_cpu_s(pid) - cpu_before
    stop.set()
    await asyncio.gather(*background)
    return {
        "reads_per_second": args.reads,
        "events_per_second": args.events,
        "duration_s": args.duration,
        "items": args.items,
        **reads,
        "answer_latency_ms": traffic.answers.summary_ms(),
        "worker_cpu_s": round(cpu_s, 2),
        # Per event or read over the measured stretch: the two share the process.
        "worker_cpu_ms_per_request": round(
            1000 * cpu_s / (reads["reads"] + args.events * args.duration), 3
        ),
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    base = load_settings(data_dir=work / "data", stack_dir=work / "stack", metrics_port=0)
    with LocalStack(base) as settings:
        settings = settings.model_copy(update=prefixed_topics(f"api-{uuid.uuid4().hex[:8]}"))
        asyncio.run(ensure_topics(settings, all_topics(settings)))
        worker = WorkerProcess(settings, work / "worker.log").start()
        try:
            asyncio.run(seed_catalogue(settings, args.items))
            wait_indexed(lambda: worker.metric("streamrec_items_indexed_total"), args.items, None)
            return asyncio.run(measure(settings, worker, args))
        finally:
            worker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests api", description=__doc__)
    parser.add_argument("--reads", type=float, default=500.0, help="GETs per second")
    parser.add_argument("--events", type=float, default=200.0, help="events per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of reads")
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/api_load.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        report = run(args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    errors = sum(n for status, n in report["statuses"].items() if status != "200")
    return 0 if errors == 0 else 1
