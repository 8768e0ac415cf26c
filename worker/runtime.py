"""The worker process: clients, the two pipelines, background checks, exact shutdown.

SIGTERM/SIGINT: stop fetching; each pipeline finishes its in-flight batch (or abandons it,
uncommitted, if it waits on a failing dependency); whatever is still running after
SHUTDOWN_TIMEOUT_S is cancelled uncommitted; then the consumers leave their groups, the
producer flushes, and the clients close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Gauge

from worker.changelog.state import SharedState
from worker.context import Context
from worker.erasure import ErasureFeed
from worker.errors import InfrastructureError, StartupError
from worker.health import Health
from worker.ingest import handle_items
from worker.item_rules import ItemRulesFeed
from worker.kafka import KafkaError, OutputProducer, all_topics, ensure_topics
from worker.media import MediaFetcher
from worker.metrics import Metrics
from worker.pipeline import Pipeline, PipelineSpec
from worker.recommend import recommend_batch
from worker.reembed import CatalogueReembed
from worker.settings import Settings
from worker.signals import Signals
from worker.store import EdgeVectorStore, QdrantServerStore, StoreError, VectorStore
from worker.triton import TritonClient, TritonError
from worker.triton_transport import TritonTransport

log = logging.getLogger(__name__)
# How often the served model versions are re-read (Triton may swap them: poll mode).
MODEL_VERSION_REFRESH_S = 5.0


def create_store(settings: Settings) -> VectorStore:
    s = settings
    if s.qdrant_url:
        return QdrantServerStore(
            s.embedding_dim,
            url=s.qdrant_url,
            api_key=s.qdrant_api_key.get_secret_value() if s.qdrant_api_key else None,
            timeout_s=s.qdrant_timeout_s,
            items_collection=s.items_collection,
            users_collection=s.users_collection,
            hnsw_ef=s.hnsw_ef,
        )
    return EdgeVectorStore(
        s.data_dir / "qdrant-edge",
        s.embedding_dim,
        items_collection=s.items_collection,
        users_collection=s.users_collection,
        hnsw_ef=s.hnsw_ef,
        quantization=s.items_quantization,
        oversampling=s.items_oversampling,
        items_process=s.items_process is True,
        items_process_from=s.items_process_from_items if s.items_process == "auto" else None,
        item_cache_size=s.item_cache_size,
        user_cache_size=s.user_cache_size,
        exact_search_max_items=s.exact_search_max_items,
    )


class Runtime:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        assert settings.triton_url, "Triton URL is resolved before the worker starts"
        self.settings = settings
        self.metrics = metrics
        self.stop = asyncio.Event()
        self.health = Health(metrics, ("events", "items"))
        self._check_topics = asyncio.Event()
        self.ctx = Context(
            settings=settings,
            triton=TritonClient(
                settings.triton_url,
                timeout_s=settings.triton_timeout_s,
                item_model=settings.triton_item_model,
                user_model=settings.triton_user_model,
                transport=TritonTransport.from_settings(settings),
            ),
            store=create_store(settings),
            media=MediaFetcher.from_settings(settings),
            signals=Signals.from_settings(settings),
        )
        self.output = OutputProducer(settings, on_data_loss=self._data_lost)
        self.state = SharedState(self.ctx, self.output, metrics)
        self.pipelines = self._pipelines()
        if self.state.embedded:
            # The events pipeline's own set, kept up to date by its rebalance callbacks.
            self.ctx.owned_partitions = self.pipelines[0].assigned
            self.ctx.event_partitions = self.pipelines[0].topic_partitions
        store = self.ctx.store
        if isinstance(store, EdgeVectorStore):
            store.user_cache.on_lookup = metrics.user_cache_read
        self.rules_feed = ItemRulesFeed(
            settings, self.ctx.rules, store, metrics, self._between_item_writes
        )
        self.erasure_feed = ErasureFeed(settings, self.ctx.erasures, metrics)
        self.reembed = (
            CatalogueReembed(
                self.ctx,
                store,
                self.output,
                metrics,
                self._between_batches,
                self.state.origin,
                self.state.catalogue,
            )
            if isinstance(store, EdgeVectorStore)
            else None
        )

    def _pipelines(self) -> list[Pipeline]:
        """The events pipeline, then the items pipeline."""
        settings = self.settings
        specs = [
            PipelineSpec(
                "events",
                settings.events_topic,
                settings.events_dlq_topic,
                settings.events_batch_size,
                settings.events_batch_wait_s,
                settings.fetch_max_wait_ms,
                lambda msgs, carried: recommend_batch(msgs, self.ctx, carried),
            ),
            PipelineSpec(
                "items",
                settings.items_topic,
                settings.items_dlq_topic,
                settings.items_batch_size,
                settings.items_batch_wait_s,
                settings.items_fetch_max_wait_ms,
                lambda msgs, carried: handle_items(msgs, self.ctx, carried),
            ),
        ]
        return [
            Pipeline(
                spec,
                self.ctx,
                self.output,
                self.health,
                self.metrics,
                self.stop,
                on_reset=self._offset_reset,
                changelog=self.state.changelog,
                on_assigned=self.state.restore_users if spec.name == "events" else None,
            )
            for spec in specs
        ]

    @contextlib.asynccontextmanager
    async def _between_batches(self) -> AsyncIterator[None]:
        """No batch of either pipeline, and no push of materialised items, runs meanwhile."""
        async with contextlib.AsyncExitStack() as stack:
            for pipeline in self.pipelines:
                await stack.enter_async_context(pipeline.in_flight)
            await stack.enter_async_context(self.state.pushes_lock)
            yield

    @contextlib.asynccontextmanager
    async def _between_item_writes(self) -> AsyncIterator[None]:
        """No items batch, and no materialisation of other workers' items, runs meanwhile."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.pipelines[1].in_flight)
            if self.state.catalogue is not None:
                await stack.enter_async_context(self.state.catalogue.writes)
            yield

    async def start(self) -> None:
        ctx, settings = self.ctx, self.settings
        await ctx.triton.wait_ready(timeout_s=120.0)
        if ctx.triton.dim != settings.embedding_dim:
            raise StartupError(
                f"EMBEDDING_DIM={settings.embedding_dim} but Triton's item_embedder "
                f"outputs {ctx.triton.dim}-d vectors"
            )
        await ctx.store.open()
        if isinstance(ctx.store, EdgeVectorStore) and not await ctx.store.count_items():
            # An empty store restores the item space Triton serves (see reembed.py).
            ctx.store.adopt_item_space((await ctx.triton.versions()).item_space)
        await self.output.start()
        # Signals and the catalogue are whole before the first batch; a partition's users
        # are restored when it is assigned.
        await self.state.start()
        # Independent (item rules touch items, erasures an in-memory log): read together,
        # so a start waits out one empty fetch of these seldom-written topics, not two.
        await asyncio.gather(self.rules_feed.start(), self.erasure_feed.reader.start_whole())
        for pipeline in self.pipelines:
            await pipeline.source.start()
        # Answers name the versions that made the searched vectors (see reembed.py).
        ctx.model_version = (await ctx.triton.versions()).answering(ctx.store.item_space)
        if settings.gc_threshold:
            # Everything alive now (modules, clients, the warm item cache) lives as long as
            # the process: no collection needs to walk it again.
            gc.freeze()
        self.health.started()
        log.info("worker started: model_version=%s", ctx.model_version)

    async def run(self) -> None:
        """Until SIGTERM/SIGINT (or `stop` set), then the exact shutdown."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        workers = {
            asyncio.create_task(p.run(), name=f"pipeline-{p.spec.name}"): p.spec.name
            for p in self.pipelines
        }
        chores = [
            asyncio.create_task(self._refresh_model_version()),
            asyncio.create_task(self._watch_topics()),
            asyncio.create_task(self._watch_dependencies()),
            *self.state.chores(self.stop, lambda: 0 in self.pipelines[0].assigned),
            asyncio.create_task(self.rules_feed.reader.follow(self.stop), name="item-rules"),
            asyncio.create_task(self.erasure_feed.reader.follow(self.stop), name="erasures"),
        ]
        if self.reembed is not None:
            chores.append(asyncio.create_task(self.reembed.run(self.stop), name="reembed"))
        if isinstance(self.ctx.store, EdgeVectorStore):
            chores.append(asyncio.create_task(self._keep_indexed(self.ctx.store), name="index"))
        stopping = asyncio.create_task(self.stop.wait())
        await asyncio.wait([stopping, *workers], return_when=asyncio.FIRST_COMPLETED)
        # A pipeline that ended on its own crashed: stop the rest the same exact way.
        crashed = [t for t in workers if t.done() and not t.cancelled() and t.exception()]
        await self._shutdown(workers, chores)
        stopping.cancel()
        if crashed:
            raise crashed[0].exception()  # type: ignore[misc]

    async def _shutdown(
        self, workers: dict[asyncio.Task[None], str], chores: list[asyncio.Task[None]]
    ) -> None:
        self.stop.set()
        self.health.stopping()
        timeout_s = self.settings.shutdown_timeout_s
        log.info("stopping: finishing in-flight batches (at most %.0f s)", timeout_s)
        _, late = await asyncio.wait(workers, timeout=timeout_s)
        for task in (*late, *chores):
            task.cancel()
        await asyncio.gather(*late, *chores, return_exceptions=True)
        for task in late:
            log.warning("%s pipeline cancelled after %.0f s, uncommitted", workers[task], timeout_s)
            self.metrics.batches_abandoned.labels(workers[task]).inc()
        await self.close()

    async def close(self) -> None:
        for pipeline in self.pipelines:
            with contextlib.suppress(Exception):
                await pipeline.source.stop()
        await self.state.close()
        for reader in (self.rules_feed.reader, self.erasure_feed.reader):
            with contextlib.suppress(Exception):
                await reader.stop()
        with contextlib.suppress(Exception):
            await self.output.stop()
        await self.ctx.media.close()
        await self.ctx.triton.close()
        await self.ctx.store.close()
        log.info("worker stopped")

    # -- background chores ---------------------------------------------------------------------

    async def _refresh_model_version(self) -> None:
        # A tritonserver polling its repository swaps in new model versions under a running
        # worker; batches after this refresh report them in model_version.
        while True:
            await asyncio.sleep(MODEL_VERSION_REFRESH_S)
            try:
                versions = await self.ctx.triton.versions()
            except TritonError as exc:
                log.warning("model_version not refreshed: %s", exc)
                continue
            version = versions.answering(self.ctx.store.item_space)
            if version != self.ctx.model_version:
                log.info("model_version: %s -> %s", self.ctx.model_version, version)
                self.ctx.model_version = version

    async def _keep_indexed(self, store: EdgeVectorStore) -> None:
        """Every INDEX_CHECK_INTERVAL_S: once INDEX_AFTER_ITEMS more items (USERS_INDEX_AFTER
        more users) are outside the HNSW index than the last build left there, index the
        collection again (in another process: edge_index.py)."""
        s, m = self.settings, self.metrics

        async def items_due() -> int:  # none during a model upgrade's re-embed
            return s.index_after_items if store.pending_space is None else sys.maxsize

        async def users_due() -> int:
            # Past the first build, a fifth of the users too: at a million users a build
            # takes ~11 minutes of a core (load_tests/users_index_bench.py).
            return max(s.users_index_after, (await store.count_users()) // 5)

        items = _Indexed(
            "items", store.unindexed_items, items_due, store.build_index, m.unindexed_items
        )
        users = _Indexed(
            "users", store.unindexed_users, users_due, store.build_users_index, m.unindexed_users
        )
        while True:
            await asyncio.sleep(s.index_check_interval_s)
            for collection in (items, users):
                await self._index_when_due(collection)

    async def _index_when_due(self, collection: _Indexed) -> None:
        name = collection.name
        try:
            unindexed = await collection.unindexed()
            collection.gauge.set(unindexed)
            if unindexed - collection.left < await collection.due():
                return
            started = time.perf_counter()
            await collection.build()
            collection.left = await collection.unindexed()
        except StoreError as exc:
            log.warning("index build of the %s failed, retried later: %s", name, exc)
            self.metrics.index_builds.labels(name, "failed").inc()
            return
        self.metrics.index_builds.labels(name, "swapped").inc()
        self.metrics.index_build_seconds.labels(name).set(time.perf_counter() - started)
        collection.gauge.set(collection.left)
        log.info("%s indexed in another process: %d were unindexed", name, unindexed)

    async def _watch_topics(self) -> None:
        """Every TOPIC_CHECK_INTERVAL_S (at once after a detected data loss): the worker's
        topics exist, or are created; the broker's answer sets the kafka dependency."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._check_topics.wait(), self.settings.topic_check_interval_s
                )
            self._check_topics.clear()
            try:
                created = await ensure_topics(
                    self.settings, all_topics(self.settings), timeout_s=10.0
                )
            except (KafkaError, InfrastructureError) as exc:
                self.health.down("kafka", str(exc))
                continue
            self.health.up("kafka")
            for topic in created:
                log.error("topic %s was missing (broker data lost?); created it", topic)
                self.metrics.topics_created.labels(topic).inc()
            for pipeline in self.pipelines if created else ():
                pipeline.source.rejoin()
            self.health.up("topics")

    async def _watch_dependencies(self) -> None:
        """Probe Triton and the store every DEPENDENCY_CHECK_INTERVAL_S, so readiness follows
        them when no batch is running into them too (an idle worker)."""
        interval = self.settings.dependency_check_interval_s
        probes: dict[str, Callable[[], Awaitable[None]]] = {
            "triton": functools.partial(self.ctx.triton.probe, answered_within_s=interval),
            "qdrant": self.ctx.store.probe,
        }
        while True:
            await asyncio.sleep(interval)
            for dependency, probe in probes.items():
                try:
                    await asyncio.wait_for(probe(), interval)
                except (InfrastructureError, TimeoutError) as exc:
                    self.health.down(dependency, str(exc) or "probe timed out")
                else:
                    self.health.up(dependency)

    def _data_lost(self, topic: str) -> None:
        self.metrics.broker_data_loss.labels(topic).inc()
        self._check_topics.set()

    def _offset_reset(self, topic: str, partition: int, offset: int) -> None:
        self.metrics.offset_resets.labels(topic).inc()
        self._check_topics.set()


@dataclass(slots=True)
class _Indexed:
    """A collection `_keep_indexed` indexes: `left` outside the index after the last build."""

    name: str
    unindexed: Callable[[], Awaitable[int]]
    due: Callable[[], Awaitable[int]]
    build: Callable[[], Awaitable[object]]
    gauge: Gauge
    left: int = 0
