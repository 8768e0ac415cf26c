"""The faust worker: two agents over micro-batches, wired to the batch handlers.

Per batch: handle -> produce outputs and dead letters -> wait for every delivery -> only then
does `take_events` ack the batch, so committed offsets never run ahead of produced output.
A batch that raises (Triton or Qdrant down) is retried with backoff, never skipped.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import faust
import mode

from worker.covisitation import CoVisitation
from worker.fanout import PushLimiter, fan_out
from worker.ingest import IngestResult, ingest_batch
from worker.kafka import OutputProducer, StreamApp, make_app, raw_message
from worker.media import MediaFetcher
from worker.metrics import Metrics
from worker.recommend import RecommendResult, recommend_batch
from worker.records import BatchResult, RawMessage
from worker.settings import Settings
from worker.store import EdgeVectorStore, QdrantServerStore, VectorStore
from worker.trending import Trending
from worker.triton import TritonClient, TritonError

log = logging.getLogger(__name__)
T = TypeVar("T")
# How often the served model versions are re-read (Triton may swap them: poll mode).
MODEL_VERSION_REFRESH_S = 5.0


def create_store(settings: Settings) -> VectorStore:
    common = {
        "items_collection": settings.items_collection,
        "users_collection": settings.users_collection,
        "hnsw_ef": settings.hnsw_ef,
    }
    if settings.qdrant_url:
        return QdrantServerStore(
            settings.embedding_dim,
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
            timeout_s=settings.qdrant_timeout_s,
            **common,
        )
    return EdgeVectorStore(settings.data_dir / "qdrant-edge", settings.embedding_dim, **common)


class Runtime(mode.Service):
    """Owns the clients the agents share; agents wait for `ready` before consuming."""

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.metrics = metrics
        assert settings.triton_url, "Triton URL is resolved before the worker starts"
        self.triton = TritonClient(
            settings.triton_url,
            timeout_s=settings.triton_timeout_s,
            item_model=settings.triton_item_model,
            user_model=settings.triton_user_model,
        )
        self.store = create_store(settings)
        self.media = MediaFetcher()
        self.output = OutputProducer(settings)
        # Shared by both agents (one event loop, no locks): the events path counts into
        # trending and co-visitation, the items path reads them when it ranks for new-item
        # pushes.
        self.trending = Trending(
            half_life_s=settings.trending_half_life_s,
            # Tracking more items than are shown keeps the ranking right at the cut-off.
            capacity=max(10 * settings.trending_size, 1000),
        )
        self.covisitation = CoVisitation(
            neighbours=settings.covisitation_neighbours, capacity=settings.covisitation_items
        )
        self.push_limiter = PushLimiter(settings.fanout_user_interval_s)
        self.model_version = ""
        self.clients_ready = asyncio.Event()
        self._assigned = False

    async def on_start(self) -> None:
        await self.triton.wait_ready(timeout_s=120.0)
        if self.triton.dim != self.settings.embedding_dim:
            raise RuntimeError(
                f"EMBEDDING_DIM={self.settings.embedding_dim} but Triton's item_embedder "
                f"outputs {self.triton.dim}-d vectors"
            )
        await self.store.open()
        await self.output.start()
        self.model_version = await self.triton.model_version()
        if self.settings.gc_threshold:
            # Everything alive now (modules, clients, the warm item cache) lives as long as
            # the process: no collection needs to walk it again.
            gc.freeze()
        self.clients_ready.set()
        self._update_ready()
        log.info("worker started: model_version=%s", self.model_version)

    @mode.Service.timer(MODEL_VERSION_REFRESH_S)
    async def _refresh_model_version(self) -> None:
        # A tritonserver polling its repository swaps in new model versions under a running
        # worker; batches after this refresh report them in model_version.
        if not self.clients_ready.is_set():
            return
        try:
            version = await self.triton.model_version()
        except TritonError as exc:
            log.warning("model_version not refreshed: %s", exc)
            return
        if version != self.model_version:
            log.info("model_version: %s -> %s", self.model_version, version)
            self.model_version = version

    def on_assigned(self) -> None:
        self._assigned = True
        self._update_ready()

    def _update_ready(self) -> None:
        # Ready = clients open AND the consumer group handed us partitions.
        self.metrics.ready.set(1 if self.clients_ready.is_set() and self._assigned else 0)

    async def on_stop(self) -> None:
        self.metrics.ready.set(0)
        await self.output.stop()
        await self.media.close()
        await self.triton.close()
        await self.store.close()


async def retrying(label: str, fn: Callable[[], Awaitable[T]], metrics: Metrics) -> T:
    """Run a batch handler until it succeeds: at-least-once means never skipping a batch."""
    delay = 0.2
    while True:
        try:
            return await fn()
        except Exception:
            metrics.batch_failures.labels(label).inc()
            log.exception("%s batch failed; retrying in %.1fs", label, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def build_app(settings: Settings, metrics: Metrics) -> StreamApp:
    app = make_app(settings)
    runtime = Runtime(settings, metrics)
    app.service(runtime)

    @app.on_rebalance_complete.connect
    async def _rebalanced(sender: faust.App, **kwargs: object) -> None:
        runtime.on_assigned()

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    items_in, events_in = topic(settings.items_topic), topic(settings.events_topic)
    dlq_for = {
        settings.items_topic: settings.items_dlq_topic,
        settings.events_topic: settings.events_dlq_topic,
    }

    async def publish(source_topic: str, result: BatchResult) -> None:
        started = time.perf_counter()
        # Delivery confirmed (and user state saved) for the whole batch before take_events
        # acks it.
        await asyncio.gather(
            runtime.output.publish(result.outputs, result.dead_letters, dlq_for[source_topic]),
            *result.pending_saves,
        )
        result.stage_seconds["publish"] = time.perf_counter() - started

    def count(source_topic: str, pipeline: str, result: BatchResult) -> None:
        for out in result.outputs:
            metrics.messages_out.labels(out.topic).inc()
        for letter in result.dead_letters:
            metrics.messages_failed.labels(source_topic, letter.stage).inc()
        metrics.observe_stages(pipeline, result.stage_seconds)

    def consumed(topic: str, batch: Sequence[faust.EventT]) -> list[RawMessage]:
        metrics.messages_in.labels(topic).inc(len(batch))
        metrics.batch_size.labels(topic).observe(len(batch))
        return [raw_message(e) for e in batch]

    # faust's take_events acks a batch even when the loop body raises, so nothing may escape
    # it: handling AND publishing are retried together until they succeed (at-least-once;
    # a retry after a partial publish can duplicate output, never lose it).
    @app.agent(items_in, name=f"{settings.consumer_group}.items")
    async def items_agent(stream: faust.StreamT[bytes]) -> None:
        await runtime.clients_ready.wait()
        async for batch in stream.take_events(
            settings.items_batch_size, within=settings.items_batch_wait_s
        ):
            msgs = consumed(settings.items_topic, batch)

            async def ingest(msgs: list[RawMessage] = msgs) -> IngestResult:
                result = await ingest_batch(
                    msgs,
                    triton=runtime.triton,
                    store=runtime.store,
                    media=runtime.media,
                    model_version=runtime.model_version,
                )
                started = time.perf_counter()
                pushes = await fan_out(
                    result.upserted_ids,
                    store=runtime.store,
                    trending=runtime.trending,
                    covisitation=runtime.covisitation,
                    limiter=runtime.push_limiter,
                    settings=settings,
                    model_version=runtime.model_version,
                    now=time.time(),
                )
                result.outputs.extend(pushes)
                result.stage_seconds["fanout"] = time.perf_counter() - started
                await publish(settings.items_topic, result)
                return result

            result = await retrying("items", ingest, metrics)
            metrics.items_indexed.inc(result.indexed)
            metrics.items_deleted.inc(result.deleted)
            count(settings.items_topic, "items", result)

    @app.agent(events_in, name=f"{settings.consumer_group}.events")
    async def events_agent(stream: faust.StreamT[bytes]) -> None:
        await runtime.clients_ready.wait()
        async for batch in stream.take_events(
            settings.events_batch_size, within=settings.events_batch_wait_s
        ):
            msgs = consumed(settings.events_topic, batch)

            async def recommend(msgs: list[RawMessage] = msgs) -> RecommendResult:
                result = await recommend_batch(
                    msgs,
                    triton=runtime.triton,
                    store=runtime.store,
                    settings=settings,
                    model_version=runtime.model_version,
                    trending=runtime.trending,
                    covisitation=runtime.covisitation,
                )
                await publish(settings.events_topic, result)
                return result

            result = await retrying("events", recommend, metrics)
            done = time.time()
            for ts in result.event_timestamps or ():
                metrics.end_to_end_seconds.observe(max(0.0, done - ts))
            count(settings.events_topic, "events", result)

    return app
