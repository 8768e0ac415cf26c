"""What the Kafka client costs: the raw echo on aiokafka against the same echo on librdkafka.

    python -m load_tests clients [--rate 300] [--duration 30] [--repeat 2]
                                 [--out results/kafka_clients.json]

On a local broker, each echo (`load_tests.raw_echo`, `load_tests.librdkafka_echo`: the same
loop, answers and commits) runs in a process of its own, in turn, `--repeat` times each;
`--rate` events a second for `--duration` seconds are sent to it and every answer awaited.
Reported per run: the echo's CPU ms per event (from /proc, all its threads), and the median
per client. The aiokafka echo is the floor `load_tests run` compares the worker with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from load_tests.procfs import tree_cpu_s
from load_tests.report import write_json
from worker.kafka import ensure_topics
from worker.settings import load_settings
from worker.stack.broker import LocalBroker

ECHOES = {"aiokafka": "load_tests.raw_echo", "librdkafka": "load_tests.librdkafka_echo"}
WARMUP = 20  # events answered before the measured ones: the group has joined by then


class EchoFailed(RuntimeError):
    pass


def _event(n: int) -> tuple[bytes, bytes]:
    user = f"u{n % 500}"
    doc = {"event_id": f"e{n}", "user_id": user, "item_id": f"i{n % 1682}", "type": "view"}
    return user.encode(), json.dumps(doc).encode()


async def _send_and_await(
    bootstrap: str, topics: dict[str, str], first: int, count: int, rate: float
) -> None:
    """Send events `first` to `first + count` at `rate`; wait until the answers topic holds
    an answer to each (and to the `first` before them)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    answers = AIOKafkaConsumer(
        topics["out"], bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await producer.start()
    await answers.start()
    try:
        start = time.monotonic()
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            key, value = _event(first + n)
            await producer.send(topics["in"], value, key=key)
        await producer.flush()
        received = 0
        deadline = time.monotonic() + 30.0
        while received < first + count and time.monotonic() < deadline:
            fetched = await answers.getmany(timeout_ms=200)
            received += sum(len(records) for records in fetched.values())
        if received < first + count:
            raise EchoFailed(f"{received} of {first + count} events answered within 30 s")
    finally:
        await producer.stop()
        await answers.stop()


def measure(bootstrap: str, client: str, rate: float, duration_s: float) -> float:
    """One run of one echo: its CPU ms per measured event."""
    tag = uuid.uuid4().hex[:8]
    topics = {"in": f"clients-{tag}.events", "out": f"clients-{tag}.answers"}
    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    asyncio.run(ensure_topics(settings, [*topics.values(), f"clients-{tag}.dlq"]))
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        EVENTS_TOPIC=topics["in"],
        RECOMMENDATIONS_TOPIC=topics["out"],
        EVENTS_DLQ_TOPIC=f"clients-{tag}.dlq",
        CONSUMER_GROUP=f"clients-{tag}",
    )
    echo = subprocess.Popen([sys.executable, "-m", ECHOES[client]], env=env)
    try:
        asyncio.run(_send_and_await(bootstrap, topics, 0, WARMUP, rate))
        count = int(rate * duration_s)
        before = tree_cpu_s(echo.pid)
        asyncio.run(_send_and_await(bootstrap, topics, WARMUP, count, rate))
        spent = tree_cpu_s(echo.pid) - before
    finally:
        echo.terminate()
        echo.wait(timeout=30)
    return 1000.0 * spent / count


def run(rate: float, duration_s: float, repeat: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {client: [] for client in ECHOES}
    with LocalBroker(Path(tempfile.mkdtemp(prefix="clients-"))) as broker:
        for _ in range(repeat):
            for client in ECHOES:  # alternating: the machine's drift hits both alike
                runs[client].append(
                    round(measure(broker.bootstrap_servers, client, rate, duration_s), 3)
                )
    medians = {client: round(statistics.median(each), 3) for client, each in runs.items()}
    return {
        "rate": rate,
        "duration_s": duration_s,
        "cpu_ms_per_event": runs,
        "median_cpu_ms_per_event": medians,
        "librdkafka_vs_aiokafka": round(medians["librdkafka"] / medians["aiokafka"], 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests clients", description=__doc__)
    parser.add_argument(
        "--rate", type=float, default=300.0, help="events a second sent to each echo"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sending per run")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each echo, alternating (default 2)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/kafka_clients.json"))
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.repeat < 1:
        parser.error("--rate and --duration must be positive, --repeat at least 1")
    report = run(args.rate, args.duration, args.repeat)
    write_json(args.out, report)
    print(json.dumps(report, indent=2))
    return 0
