"""The broker floor: a bare consume -> produce echo with the worker's Kafka path.

`python -m load_tests.echo` (configured by the worker's environment variables) consumes
`user-events` with the worker's own pipeline (consumer, size-or-deadline batching, checkpoint:
deliver, then commit), per-user coalescing and DLQ rule, and answers each user with a
`recommendations`-shaped message with no items. No model work: what it measures is what the
broker and the Kafka clients cost on their own.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from worker.context import Context
from worker.events import parse_event
from worker.health import Health
from worker.kafka import OutputProducer
from worker.metrics import Metrics
from worker.pipeline import Pipeline, PipelineSpec
from worker.records import BatchResult, DeadLetter, OutMessage, RawMessage, SignalUpdates
from worker.settings import Settings, load_settings
from worker.stack.process import ManagedProcess
from worker.stack.worker_process import settings_env
from worker.validation import InvalidMessage

REPO_ROOT = Path(__file__).resolve().parents[1]


def echo_batch(
    msgs: list[RawMessage], settings: Settings, *, now: float
) -> tuple[list[OutMessage], list[DeadLetter]]:
    """One answer per user (or per event without coalescing); invalid events dead-lettered."""
    groups: dict[str, tuple[str, list[str]]] = {}  # group key -> (user id, event ids)
    letters: list[DeadLetter] = []
    for msg in msgs:
        try:
            event = parse_event(msg.key, msg.value)
        except InvalidMessage as exc:  # the worker's DLQ rule
            letters.append(DeadLetter(source=msg, stage="decode", reason=str(exc)))
            continue
        group = event.user_id if settings.coalesce_events else event.event_id
        groups.setdefault(group, (event.user_id, []))[1].append(event.event_id)
    outputs = []
    for user_id, event_ids in groups.values():
        value = orjson.dumps(
            {
                "user_id": user_id,
                "event_id": event_ids[-1],
                "event_ids": event_ids,
                "items": [],
                "model_version": "echo",
                "generated_at": now,
                "timings_ms": {},
                "strategy": "echo",
            }
        )
        outputs.append(OutMessage(settings.recommendations_topic, user_id.encode(), value))
    return outputs, letters


async def run_echo(settings: Settings) -> None:
    """The worker's pipeline around `echo_batch`: same consumer, batching and checkpoint."""
    metrics = Metrics()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    output = OutputProducer(settings)
    await output.start()

    async def handle(msgs: Sequence[RawMessage], carried: object) -> BatchResult:
        outputs, letters = echo_batch(list(msgs), settings, now=time.time())
        return BatchResult(outputs=outputs, dead_letters=letters)

    spec = PipelineSpec(
        "echo",
        settings.events_topic,
        settings.events_dlq_topic,
        settings.events_batch_size,
        settings.events_batch_wait_s,
        settings.fetch_max_wait_ms,
        handle,
    )
    ctx = Context(settings, triton=None, store=None, media=None, signals=_NoSignals())  # type: ignore[arg-type]
    pipeline = Pipeline(spec, ctx, output, Health(metrics, ("echo",)), metrics, stop)
    await pipeline.source.start()
    if settings.gc_threshold:
        gc.freeze()
    try:
        await pipeline.run()
    finally:
        await pipeline.source.stop()
        await output.stop()


class _NoSignals:
    def apply(self, updates: SignalUpdates) -> None:
        pass


class EchoProcess(ManagedProcess):
    """Runs an echo (`module`: this one, or `load_tests.raw_echo`) as a child process: it
    must not share the generator's event loop or CPU."""

    name = "echo"

    def __init__(self, settings: Settings, log_path: Path, module: str = "load_tests.echo") -> None:
        super().__init__(log_path)
        self.settings = settings
        self.module = module

    def start(self) -> EchoProcess:
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": path}
        self._spawn([sys.executable, "-m", self.module], env=env)
        return self


def main() -> int:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.gc_threshold:  # the worker's process settings (see worker.__main__)
        gc.set_threshold(settings.gc_threshold)
    asyncio.run(run_echo(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
