"""The broker floor: a bare consume -> produce echo with the worker's Kafka settings.

`python -m load_tests.echo` (configured by the worker's environment variables) consumes
`user-events` with the same faust app, consumer settings, micro-batching, per-user coalescing
and DLQ rule as the worker, and answers each user with a `recommendations`-shaped message with
no items. No model work: what it measures is what broker, clients and faust cost on their own.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from pathlib import Path

import faust
import orjson
from faust.worker import Worker

from worker.events import parse_event
from worker.kafka import OutputProducer, StreamApp, make_app, raw_message
from worker.records import DeadLetter, OutMessage, RawMessage
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


def build_echo_app(settings: Settings) -> StreamApp:
    app = make_app(settings)

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    events_in = topic(settings.events_topic)

    @app.agent(events_in, name=f"{settings.consumer_group}.echo")
    async def echo(stream: faust.StreamT[bytes]) -> None:
        output = OutputProducer(settings)  # the worker's producer, the worker's way
        await output.start()
        if settings.gc_threshold:
            gc.freeze()
        try:
            async for batch in stream.take_events(
                settings.events_batch_size, within=settings.events_batch_wait_s
            ):
                outputs, letters = echo_batch(
                    [raw_message(e) for e in batch], settings, now=time.time()
                )
                # Like the worker: deliveries confirmed before take_events acks the batch.
                await output.publish(outputs, letters, settings.events_dlq_topic)
        finally:
            await output.stop()

    return app


class EchoProcess(ManagedProcess):
    """Runs the echo as a child process: it must not share the generator's event loop or CPU."""

    name = "echo"

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(log_path)
        self.settings = settings

    def start(self) -> EchoProcess:
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": path}
        self._spawn([sys.executable, "-m", "load_tests.echo"], env=env)
        return self


def main() -> int:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.gc_threshold:  # the worker's process settings (see worker.app)
        gc.set_threshold(settings.gc_threshold)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(build_echo_app(settings), loop=loop, loglevel=settings.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
