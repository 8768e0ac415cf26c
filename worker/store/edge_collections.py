"""Replacing the embedded store's active items collection by another one in one step.

Two reasons to: a model upgrade (the pending collection of a new item space, filled by a
re-embed: worker/reembed.py) and an index build (a copy of the active collection, indexed
in another process: edge_index.py). Either way searches go on against the active collection
until the swap, and writes made meanwhile reach the new collection too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from qdrant_edge import EdgeShard

from worker.store.background import at_low_priority
from worker.store.base import ItemRecord, SearchRequest, StoreError
from worker.store.edge_cache import ItemCache
from worker.store.edge_items import Items, ItemsShard, NewPoint, SearchParams
from worker.store.edge_items_process import ItemsProcess
from worker.store.edge_retire import retire_shard
from worker.store.edge_shards import ITEM_INDEX_FIELDS, Quantization
from worker.store.exact_index import ExactIndex
from worker.store.payload import item_point_ids, vector_list
from worker.store.spaces import SpaceCollection, SpaceRegistry, space_collection

T = TypeVar("T")
log = logging.getLogger(__name__)


class CollectionSwaps:
    """Mixed into EdgeVectorStore, whose state and helpers it uses."""

    dim: int
    quantization: Quantization
    _path: Path
    _items_name: str
    _items: Items | None
    _pending: Items | None
    _spaces: SpaceRegistry
    _pending_touched: set[str]
    _index_build: IndexBuild | None
    _build_lock: asyncio.Lock
    _space_lock: asyncio.Lock
    _item_cache: ItemCache
    _exact: ExactIndex | None
    _unindexed_bound: int
    _readers: Counter[int]
    _reader_left: asyncio.Event
    _last_searches: deque[Sequence[SearchRequest]]
    last_index_build: BuildPhases | None
    hnsw_ef: int
    oversampling: float

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T: ...
        async def _open_items(self, collection: SpaceCollection) -> Items: ...
        async def _warm_cache(self, items: Items) -> tuple[ItemCache, ExactIndex | None]: ...
        async def _upsert(
            self, shard: Items, items: Sequence[ItemRecord], *, cache: bool
        ) -> None: ...
        def _shards(self) -> tuple[Items, EdgeShard]: ...

    # -- item spaces -------------------------------------------------------------------------

    @property
    def item_space(self) -> str:
        """The space of the searched item vectors ("": not known yet; the first versioned
        write decides it)."""
        return self._spaces.active.space

    @property
    def active_collection(self) -> str:
        """The directory name of the searched items collection (an index build's swap or
        a switch changes it)."""
        return self._spaces.active.collection

    @property
    def pending_space(self) -> str | None:
        return None if self._spaces.pending is None else self._spaces.pending.space

    def holds_item_space(self, space: str) -> bool:
        """Whether items of `space` would be kept (see `upsert_items`)."""
        return space in ("", self.item_space, self.pending_space) or not self.item_space

    def adopt_item_space(self, space: str) -> None:
        """Name the space of a store that does not know its own (an empty one, at start)."""
        if self.item_space and self.item_space != space:
            raise StoreError(f"the store's items are in {self.item_space}, not {space}")
        self._spaces.active = replace(self._spaces.active, space=space)
        self._spaces.save()

    async def begin_item_space(self, space: str) -> None:
        """Open (or create) the collection a re-embed into `space` fills; from now on writes
        in `space` go there too, and searches still go to the active collection. `space` may
        be the active one's: a rebuild."""
        if space == self.pending_space:
            return
        await self.abandon_item_space()
        async with self._space_lock:
            pending = SpaceCollection(space, space_collection(self._items_name, space))
            self._pending = await self._open_items(pending)
            self._spaces.pending = pending
            self._spaces.save()
            self._pending_touched = set()

    async def abandon_item_space(self) -> None:
        """Drop the pending collection (e.g. Triton moved on to yet another version)."""
        async with self._space_lock:
            if self._spaces.pending is None:
                return
            shard, self._pending = self._pending, None
            directory = self._path / self._spaces.pending.collection
            self._spaces.pending = None
            self._spaces.save()
            await self._remove(shard, directory)

    async def switch_item_space(self) -> None:
        """The pending collection becomes the searched one in one step (its item cache warmed
        first); the old collection is deleted."""
        async with self._space_lock:
            if self._pending is None or self._spaces.pending is None:
                raise StoreError("no pending item space to switch to")
            cache, exact = await self._warm_cache(self._pending)
            old, old_dir = self._items, self._path / self._spaces.active.collection
            self._items, self._pending = self._pending, None
            self._item_cache, self._exact = cache, exact
            self._spaces.active, self._spaces.pending = self._spaces.pending, None
            self._spaces.save()
            await self._remove(old, old_dir)
        await self.unindexed_items()

    async def upsert_reembedded(self, items: Sequence[ItemRecord]) -> int:
        """A re-embed's writes into the pending collection: items the items path wrote or
        deleted since the pending space began are left alone. -> how many were written."""
        async with self._space_lock:
            space = self.pending_space
            if self._pending is None or space is None:
                raise StoreError("no pending item space to write into")
            kept = [i for i in items if i.item_id not in self._pending_touched]
            if any(item.model_version != space for item in kept):
                raise StoreError(f"re-embedded items must be in the pending space {space}")
            await self._upsert(self._pending, kept, cache=False)
            self._record_writes(True, [i.item_id for i in kept])
            return len(kept)

    # -- index builds ------------------------------------------------------------------------

    def _record_writes(self, pending: bool, item_ids: Iterable[str]) -> None:
        build = self._index_build
        if build is not None and build.pending == pending:
            build.touched.update(item_ids)

    async def unindexed_items(self, pending: bool = False) -> int:
        """Items of the active (or pending) collection outside its HNSW index: searched
        exactly."""
        shard = self._pending if pending else self._shards()[0]
        collection = self._spaces.pending if pending else self._spaces.active
        if shard is None or collection is None:
            return 0
        points, indexed = await self._run(shard.indexing)
        unindexed = points - indexed
        if not pending:
            self._unindexed_bound = unindexed
        self._record_count(collection, points)
        return unindexed

    def _record_count(self, counted: SpaceCollection, points: int) -> None:
        """Keep `counted`'s size in the registry, unless a swap replaced it meanwhile."""
        if counted.items == points:
            return
        if self._spaces.active is counted:
            self._spaces.active = replace(counted, items=points)
        elif self._spaces.pending is counted:
            self._spaces.pending = replace(counted, items=points)
        else:
            return
        self._spaces.save()

    async def build_index(self, pending: bool = False) -> None:
        """Index a copy of the active (or pending) collection in another process, then swap
        it in. The engine holds the GIL for a whole call, so an in-process build would freeze
        the worker for its duration; here the worker's own engine calls stay short:
        the copy's load, and the writes made during the build carried over to it."""
        async with self._build_lock:
            if self._pending is not None and not pending:
                raise StoreError("an item space switch is under way; index after it")
            target = self._spaces.pending if pending else self._spaces.active
            if target is None:
                raise StoreError("no pending collection to index")
            phases = BuildPhases(time.perf_counter())
            copy = await self._copy(pending)
            phases.mark("copied")
            try:
                phases.build = await index_in_another_process(copy, self.dim, self.quantization)
                phases.mark("indexed")
                indexed = SpaceCollection(target.space, copy.name, target.items)
                replaced, replaced_dir = await self._swap_in(
                    indexed, target.collection, pending, phases
                )
            except BaseException:
                self._index_build = None
                shutil.rmtree(copy, ignore_errors=True)
                raise
            # Out of the try: the copy is the collection now, whatever happens to the old
            # one (a restart deletes what is left of it).
            await self._remove(replaced, replaced_dir)
            phases.mark("removed")
            self.last_index_build = phases
            log.info("index build of %s: %s", target.collection, phases)
        await self.unindexed_items()

    def _collection(self, pending: bool) -> tuple[SpaceCollection | None, Items | None]:
        if pending:
            return self._spaces.pending, self._pending
        return self._spaces.active, self._shards()[0]

    async def _copy(self, pending: bool) -> Path:
        """A copy of the collection; its writes from now on are recorded. Not flushed first:
        with writes held back the directory is what a kill -9 would leave, whose write-ahead
        log the build's process replays, and a flush here held up searches (at 1M items
        plus 50k new, 0.26 s; with ITEMS_PROCESS, a flush and searches of a collection take
        turns in its process)."""
        async with self._space_lock:
            collection, shard = self._collection(pending)
            assert collection is not None and shard is not None
            copy = self._path / space_collection(self._items_name, collection.space)
            # Another thread than the store's: searches go on meanwhile, writes wait.
            await at_low_priority(shutil.copytree, self._path / collection.collection, copy)
            self._index_build = IndexBuild(pending)
            return copy

    async def _swap_in(
        self, copy: SpaceCollection, source: str, pending: bool, phases: BuildPhases
    ) -> tuple[Items, Path]:
        """-> the collection replaced, to remove."""
        # Loaded before the lock, while writes go on (in a process of its own if it is
        # large enough: edge.py's `_open_items`).
        indexed = await self._open_items(copy)
        phases.mark("loaded")
        try:
            await self._warm_up(indexed, phases)
            phases.mark("warmed")
            swapped = await self._carry_over_and_swap(indexed, copy, source, pending)
            phases.mark("swapped")
            return swapped
        except BaseException:
            if indexed not in (self._items, self._pending):
                await self._remove(indexed, None)
            raise

    async def _warm_up(self, indexed: Items, phases: BuildPhases) -> None:
        """Answer the latest searches on the loaded copy, untimed: a freshly loaded
        collection's first few batches are slow, whatever they ask (300k items, a fresh
        process: 43, 48, 32, 30 ms, then 21-22)."""
        params = SearchParams(self.hnsw_ef, self.oversampling)
        for requests in list(self._last_searches):
            began = time.perf_counter()
            if isinstance(indexed, ItemsProcess):  # no one else calls it yet: not the store's
                await asyncio.to_thread(indexed.search, requests, params)  # thread
            else:
                await self._run(indexed.search, requests, params)
            phases.warm_up_ms.append(round((time.perf_counter() - began) * 1000.0, 1))

    async def _carry_over_and_swap(
        self, indexed: Items, copy: SpaceCollection, source: str, pending: bool
    ) -> tuple[Items, Path]:
        async with self._space_lock:
            current, live = self._collection(pending)
            if current is None or live is None or current.collection != source:
                # A switch or an abandoned upgrade replaced the collection copied.
                raise StoreError("the collection changed during the index build")
            build, self._index_build = self._index_build, None
            touched = sorted(build.touched) if build is not None else []
            # A call per chunk: one holds the GIL, and a bulk load's writes during a build
            # would otherwise be upserted in a single call (at ~10k items/s, seconds).
            for start in range(0, len(touched), CARRY_OVER_CHUNK):
                chunk = touched[start : start + CARRY_OVER_CHUNK]
                await self._run(_carry_over, live, indexed, chunk)
            replaced = SpaceCollection(current.space, copy.collection, copy.items)
            if pending:
                self._pending, self._spaces.pending = indexed, replaced
            else:
                # The item cache stays valid: the same items.
                self._items, self._spaces.active = indexed, replaced
            self._spaces.save()
            return live, self._path / source

    @contextlib.contextmanager
    def _reading(self, shard: Items) -> Iterator[None]:
        """`shard` stays open meanwhile (see `_remove`)."""
        self._readers[id(shard)] += 1
        try:
            yield
        finally:
            self._readers[id(shard)] -= 1
            self._reader_left.set()

    async def _remove(self, shard: Items | None, directory: Path | None) -> None:
        """Close `shard` (if open) once no search is reading it, and delete its directory
        (if given; an in-process shard is then closed in steps: edge_retire.py). The files
        go on another thread than the store's: at a million items that took 0.4 s, which
        searches would wait behind."""
        if shard is not None:
            while self._readers[id(shard)] > 0:
                self._reader_left.clear()
                await self._reader_left.wait()
            del self._readers[id(shard)]
            if isinstance(shard, ItemsShard) and directory is not None:
                await retire_shard(self._run, shard.shard, ITEM_INDEX_FIELDS, directory)
            else:
                await self._run(shard.close, False)
        if directory is not None:
            await at_low_priority(shutil.rmtree, directory, ignore_errors=True)


# Latest search batches an indexed copy answers before its swap (`_warm_up`).
WARM_UP_BATCHES = 4
# Items carried over to an indexed copy per engine call (~25 ms at ~10k items/s).
CARRY_OVER_CHUNK = 256


@dataclass(slots=True)
class BuildPhases:
    """When each step of an index build ended, in seconds from its start: copied, indexed
    (the other process done), loaded, warmed (items), swapped, closed (users: the replaced
    collection), removed; the seconds of the other process's own steps; and the wall ms of
    each warm-up batch. Logged once per build, kept as the store's `last_index_build`."""

    started: float  # perf_counter
    ends: dict[str, float] = field(default_factory=dict)
    warm_up_ms: list[float] = field(default_factory=list)
    build: dict[str, float] = field(default_factory=dict)  # the build process's own steps

    def mark(self, step: str) -> None:
        self.ends[step] = round(time.perf_counter() - self.started, 2)

    def __str__(self) -> str:
        steps = ", ".join(f"{step} at {s:.2f} s" for step, s in self.ends.items())
        return f"{steps}; the build's steps {self.build}; warm-up batches {self.warm_up_ms} ms"


@dataclass(slots=True)
class IndexBuild:
    pending: bool  # of the pending collection, else the active one
    touched: set[str] = field(default_factory=set)  # written or deleted since the copy


async def index_in_another_process(copy: Path, dim: int, kind: str) -> dict[str, float]:
    """`kind`: the items' quantisation, or "users". -> the seconds each of the build's steps
    took (edge_index.py)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker.store.edge_index", str(copy), str(dim), kind,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, error = await process.communicate()
    if process.returncode != 0:
        raise StoreError(f"index build failed: {error.decode(errors='replace')[-500:]}")
    try:
        return dict(json.loads(out.decode().splitlines()[-1]))
    except (ValueError, IndexError):
        return {}  # the timings are for the record only


def _carry_over(source: Items, target: Items, item_ids: Sequence[str]) -> None:
    """Make `target` hold what `source` holds of these items (upserted or deleted)."""
    points = list(item_point_ids(item_ids))
    records = source.retrieve(points, True, True)
    kept: list[NewPoint] = [
        (point, vector_list(vector), payload or {})
        for point, payload, vector in records
        if vector is not None
    ]
    target.upsert(kept)
    target.delete(sorted(set(points) - {point for point, _, _ in records}))
