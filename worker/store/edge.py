"""VectorStore on Qdrant Edge: Qdrant's engine in process, one shard directory per collection.

Edge is synchronous and holds Python's GIL for a whole call, so a thread would not keep the
event loop going during one: the engine's calls run on the loop, each followed by a turn for
the loop's other tasks. Calls on an items collection in a child process (ITEMS_PROCESS) wait
on a socket without the GIL, and run on the store's one thread.

Item collections are per item space (`spaces.py`): writes go to the collection of the
space their vectors are in, searches to the active one, and `switch_item_space` makes a
re-embedded collection the active one in one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from qdrant_edge import EdgeShard

from worker.store.base import (
    ItemRecord,
    SearchRequest,
    StoreError,
    StoreUnavailable,
)
from worker.store.base import point_id as derive_point_id
from worker.store.edge_cache import ItemCache, cached, warm_cache
from worker.store.edge_collections import WARM_UP_BATCHES, BuildPhases, CollectionSwaps, IndexBuild
from worker.store.edge_items import Items, ItemsShard, NewPoint, Record, Scroll
from worker.store.edge_items_process import ItemsProcess
from worker.store.edge_query import PointId
from worker.store.edge_rules import ItemRuleUpdates
from worker.store.edge_search import ItemReads
from worker.store.edge_shards import Quantization, close_shard, open_shard
from worker.store.edge_users import UserStates
from worker.store.edge_users_index import UsersIndex, users_directory_at_open
from worker.store.exact_index import ExactIndex, exact_index_of
from worker.store.payload import (
    SCORED_FIELDS,
    item_payload,
    item_point_ids,
    scored_item,
    vector_list,
)
from worker.store.spaces import SpaceCollection, SpaceRegistry
from worker.store.user_cache import UserCache

T = TypeVar("T")

log = logging.getLogger(__name__)


class EdgeVectorStore(CollectionSwaps, ItemReads, ItemRuleUpdates, UsersIndex, UserStates):
    """Embedded store. `flush_interval_s` bounds how much WAL a restart must replay;
    `item_cache_size` items (vector and ranking fields) and `user_cache_size` user states
    are kept in memory (0: no cache).

    Embedded means this process is the store's only writer, so a write-through item cache
    stays exact. It matters: the engine's Python binding converts payloads and vectors value
    by value (measured: a batch of 34 searches of 50 hits takes 4.4 ms for ids and scores,
    25 ms with the payload fields), so searches ask the engine for ids and scores only.
    """

    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        items_collection: str = "items",
        users_collection: str = "users",
        hnsw_ef: int = 128,
        flush_interval_s: float | None = 30.0,
        item_cache_size: int = 100_000,
        user_cache_size: int = 2_000,
        quantization: Quantization = "none",
        oversampling: float = 1.5,
        items_process: bool = False,
        items_process_from: int | None = None,
        exact_search_max_items: int = 10_000,
    ) -> None:
        """`quantization` of the indexed vectors (`oversampling` x k rescored); items in a
        process of their own: all, or those of `items_process_from` items at open (None:
        none); up to `exact_search_max_items` items, all cached, scanned in this process."""
        self.dim = dim
        self._path = Path(path)
        self._items_name = items_collection
        self._users_name = users_collection
        self.hnsw_ef = hnsw_ef
        self.quantization = quantization
        self.oversampling = oversampling if quantization != "none" else 0.0
        self.items_process = items_process
        self.items_process_from = items_process_from
        self._flush_interval_s = flush_interval_s
        self._executor: ThreadPoolExecutor | None = None
        self._items: Items | None = None
        self._users: EdgeShard | None = None
        self._pending: Items | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._item_cache = ItemCache(item_cache_size)
        self.exact_search_max_items = exact_search_max_items
        self._exact: ExactIndex | None = None
        self.user_cache = UserCache(user_cache_size)
        self._spaces = SpaceRegistry(self._path / "item-spaces.json", items_collection)
        # Items written to or deleted from the pending collection by the items path while a
        # re-embed fills it: newer than anything the re-embed read, so it leaves them alone.
        self._pending_touched: set[str] = set()
        # The index build under way (one at a time), which records the writes it must carry
        # over to the indexed copy.
        self._index_build: IndexBuild | None = None
        self._build_lock = asyncio.Lock()
        self.last_index_build: BuildPhases | None = None
        self._init_users_index()
        # At most this many items of the active collection are outside its index: counted at
        # open and at each check, plus the upserts since (searches are split by it).
        self._unindexed_bound = 0
        # Searches under way per shard (by id): a swap closes the shard it replaces only
        # once they are done, since a split search spans several calls.
        self._readers: Counter[int] = Counter()
        self._reader_left = asyncio.Event()
        # The latest batches of searches (edge_search.py).
        self._last_searches: deque[Sequence[SearchRequest]] = deque(maxlen=WARM_UP_BATCHES)
        # Routing a write and making it are one step with respect to a switch.
        self._space_lock = asyncio.Lock()

    @property
    def item_cache_size(self) -> int:
        return self._item_cache.size

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-store")
        self._path.mkdir(parents=True, exist_ok=True)
        self._spaces = SpaceRegistry(self._path / "item-spaces.json", self._items_name)
        await asyncio.to_thread(self._spaces.remove_strays, self._path)
        at = await asyncio.to_thread(users_directory_at_open, self._path, self._users_name)
        self._users_dir = at
        try:
            self._items = await self._open_items(self._spaces.active)
            users = functools.partial(open_shard, indexed=False)
            self._users = await self._run(users, self._path / at, self.dim)
            if self._spaces.pending is not None:
                self._pending = await self._open_items(self._spaces.pending)
        except StoreError:
            await self.close()
            raise
        if self._flush_interval_s:
            self._flusher = asyncio.create_task(self._flush_periodically(self._flush_interval_s))
        self._item_cache, self._exact = await self._warm_cache(self._shards()[0])
        if self._exact is not None:
            log.info("%d items: searched in this process (exact)", len(self._exact))
        await self.unindexed_items()

    @property
    def exact_search(self) -> bool:
        """Whether searches scan the items in this process (exact_index.py)."""
        return self._exact is not None

    def set_exact_search(self, enabled: bool) -> bool:
        """Searches by the engine (False) or, if the catalogue qualifies, in this process
        (True), for benchmarks of both on one store. -> `exact_search`."""
        self._exact = (
            exact_index_of(self._item_cache, self.dim, self.exact_search_max_items)
            if enabled
            else None
        )
        return self.exact_search

    async def _warm_cache(self, items: Items) -> tuple[ItemCache, ExactIndex | None]:
        """The collection's item cache and, if it fits, its exact index (installed together:
        the index mirrors the cache's collection)."""

        def page(offset: PointId | None, limit: int) -> Awaitable[tuple[list[Record], object]]:
            return self._run(items.scroll, Scroll("all", limit, SCORED_FIELDS, True, offset))

        cache = await warm_cache(self._item_cache.size, page)
        return cache, exact_index_of(cache, self.dim, self.exact_search_max_items)

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        items = [s for s in (self._items, self._pending) if s is not None]
        users, self._users = self._users, None
        self._items = self._pending = None
        self.user_cache.clear()
        try:
            closes = [functools.partial(c.close) for c in items]
            closes += [functools.partial(close_shard, users)] if users is not None else []
            # Each closed even if one fails (e.g. a dead items process); the first error wins.
            errors = [e for close in closes if (e := await self._try(close)) is not None]
            if errors:
                raise errors[0]
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _try(self, fn: Callable[[], object]) -> StoreError | None:
        try:
            await self._run(fn)
        except StoreError as exc:
            return exc
        return None

    async def flush(self) -> None:
        """Persist segments now (the items' WAL already holds every acknowledged update; the
        users' states since the last flush are in the user-state changelog)."""
        for shard in (self._items, self._pending):
            if shard is not None:
                await self._run(shard.flush)
        if self._users is not None:
            await self.flush_users()

    async def optimize(self) -> bool:
        """Build HNSW / vacuum segments. Edge never does this on its own; it blocks the store's
        thread while it runs, so call it at a quiet moment. True if anything was optimised."""
        items, users = self._shards()
        optimized_items = await self._run(items.optimize)
        optimized_users = await self._run(users.optimize)
        return optimized_items or optimized_users

    # -- items -------------------------------------------------------------------------------

    async def upsert_items(self, items: Sequence[ItemRecord]) -> None:
        """Each item goes to the collection of its vector's space (`model_version`); one of
        a space the store holds no collection for is dropped: older than the active space,
        or newer, and then the re-embed into that space writes it."""
        if not items:
            return
        async with self._space_lock:
            active = self._spaces.active
            if not active.space and (versioned := [i for i in items if i.model_version]):
                # A store of unknown space takes the space of its first versioned item.
                self.adopt_item_space(versioned[0].model_version)
            space, pending = self.item_space, self.pending_space
            to_active = [i for i in items if i.model_version in ("", space)]
            to_pending = [i for i in items if pending and i.model_version == pending]
            if len(to_active) + len(to_pending) < len(items):
                log.warning(
                    "%d item vectors of another space than %s dropped",
                    len(items) - len(to_active) - len(to_pending), space,
                )  # fmt: skip
            await self._upsert(self._shards()[0], to_active, cache=True)
            self._unindexed_bound += len(to_active)
            self._record_writes(False, [i.item_id for i in to_active])
            if to_pending and self._pending is not None:
                await self._upsert(self._pending, to_pending, cache=False)
                self._pending_touched.update(i.item_id for i in to_pending)
                self._record_writes(True, [i.item_id for i in to_pending])

    async def _upsert(self, shard: Items, items: Sequence[ItemRecord], *, cache: bool) -> None:
        if not items:
            return
        points: list[NewPoint] = [
            (derive_point_id("item", item.item_id), vector_list(item.vector), item_payload(item))
            for item in items
        ]
        await self._run(shard.upsert, points)
        if cache:
            for item, (point, _, payload) in zip(items, points, strict=True):
                vector = np.asarray(item.vector, dtype=np.float32)
                entry = cached(scored_item(payload, 0.0, vector))
                self._item_cache.put(point, entry)
                if self._exact is not None and not self._exact.put(point, entry):
                    log.info(
                        "over %d items: searches go to the engine's index",
                        self.exact_search_max_items,
                    )
                    self._exact = None

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        """Deletes from the active and any pending collection."""
        if not item_ids:
            return
        async with self._space_lock:
            ids = list(item_point_ids(item_ids))
            await self._run(self._shards()[0].delete, ids)
            for point in ids:
                self._item_cache.discard(point)
                if self._exact is not None:
                    self._exact.remove(point)
            self._record_writes(False, item_ids)
            if self._pending is not None:
                await self._run(self._pending.delete, ids)
                self._pending_touched.update(item_ids)
                self._record_writes(True, item_ids)

    async def count_items(self, pending: bool = False) -> int:
        """Items in the active collection (or, with `pending`, in the pending one)."""
        shard = self._pending if pending else self._shards()[0]
        if shard is None:
            return 0
        return await self._run(shard.count, True)

    async def probe(self) -> None:
        # Embedded: the store is up while it is open; an engine error here is not the data's.
        try:
            await self._run(self._shards()[0].count, False)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def items_process_cpu_s(self) -> float:
        """CPU seconds of the items collections' processes so far (ITEMS_PROCESS; else 0):
        benchmarks count them with the worker's own."""
        children = [c for c in (self._items, self._pending) if isinstance(c, ItemsProcess)]
        return sum([await self._run(c.cpu_s) for c in children])

    # -- internals ---------------------------------------------------------------------------

    async def _open_items(self, collection: SpaceCollection) -> Items:
        directory = self._path / collection.collection
        least = self.items_process_from  # a collection never counted (-1) stays here
        if not self.items_process and (least is None or collection.items < least):
            return await self._run(ItemsShard.open, directory, self.dim, self.quantization)
        # Not on the store's thread: searches go on while the child loads the collection.
        try:
            return await asyncio.to_thread(
                ItemsProcess.start, directory, self.dim, self.quantization
            )
        except StoreError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"the items process did not start: {exc}") from exc

    async def _flush_periodically(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except StoreError:
                # Retried next tick; the items' WAL and the user-state changelog hold every
                # acknowledged update.
                log.warning("periodic edge flush failed", exc_info=True)

    def _shards(self) -> tuple[Items, EdgeShard]:
        if self._items is None or self._users is None:
            raise StoreUnavailable("EdgeVectorStore is not open")
        return self._items, self._users

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        if self._executor is None:
            raise StoreUnavailable("EdgeVectorStore is not open")
        try:
            if _waits_on_a_process(fn, args):
                call = functools.partial(fn, *args, **kwargs)
                return await asyncio.get_running_loop().run_in_executor(self._executor, call)
            result = fn(*args, **kwargs)
        except StoreError:
            raise  # the items process's, already classified
        except Exception as exc:  # Edge raises bare Exception for every engine error
            raise StoreError(f"qdrant edge: {exc}") from exc
        await asyncio.sleep(0)  # a turn for the loop's other tasks, as a thread's call gave
        return result


def _waits_on_a_process(fn: Callable[..., object], args: Sequence[object]) -> bool:
    """Whether the call involves an items collection in a child process (ITEMS_PROCESS),
    which waits on its socket with the GIL released: on the store's thread, so the loop goes
    on meanwhile. The engine's own calls hold the GIL from start to end, so a thread would
    free nothing for them and only add two hand-offs per call (measured at 300 events/s:
    2.5-5% of the worker's CPU); they run on the loop."""
    if isinstance(fn, functools.partial):
        return _waits_on_a_process(fn.func, (*fn.args, *args))
    return any(isinstance(x, ItemsProcess) for x in (getattr(fn, "__self__", None), *args))
