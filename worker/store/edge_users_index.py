"""An HNSW index on the embedded store's users collection, for the new-item fan-out's
nearest-users search (worker/fanout.py), built like the items' (edge_index.py).

Searched exactly, that search grows with the users: at 1M users 67-84 ms of CPU per new
item, each call holding the GIL. Once `USERS_INDEX_AFTER` users are outside the index, a
copy of the collection is indexed in another process and swapped in; the users written
after a build go to a small segment the engine searches exactly next to the indexed one
(a user written again leaves the indexed segment). At 100k users a search for the users of
1 of 4 partitions took 1.7 ms against 17 exact, finding the same 20 users.

The users collection keeps no write-ahead log (edge_shards.USERS_WAL): it is copied right
after a flush, with flushes held back until the copy is done, and every user written or
deleted from the flush on is carried over from the live collection before the swap. Writes
go on meanwhile; the last carry-over, the copy's flush and the swap are one synchronous step,
so no write falls between them, and the pointer file names the copy before any later flush
(the user-state checkpoint's) can count on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from qdrant_edge import EdgeShard, Point, UpdateOperation

from worker.store.background import at_low_priority
from worker.store.base import StoreError
from worker.store.edge_collections import BuildPhases, index_in_another_process
from worker.store.edge_items import Items
from worker.store.edge_query import PointId
from worker.store.edge_retire import retire_shard
from worker.store.edge_shards import USER_INDEX_FIELDS, USERS, open_shard
from worker.store.payload import VECTOR_NAME, user_point_ids

T = TypeVar("T")

# Names the directory of the users collection once an index build replaced the first one.
POINTER_FILE = "users-collection.json"
# Users carried over to the indexed copy per engine call (a state's read and write ~0.2 ms).
CARRY_OVER_CHUNK = 128
# Carry-over passes while writes go on, before the final one; each pass carries what the one
# before left, a few seconds' writes at most, so this bound is only met under a write storm.
CARRY_OVER_PASSES = 20


def users_directory_at_open(path: Path, base: str) -> str:
    """The users collection's directory name: the one the last swap recorded, else `base`.
    Other copies (a build a stop interrupted) are deleted."""
    pointer = path / POINTER_FILE
    name = str(json.loads(pointer.read_text())["collection"]) if pointer.exists() else base
    for directory in [path / base, *path.glob(f"{base}-*")]:
        if directory.is_dir() and directory.name != name:
            shutil.rmtree(directory, ignore_errors=True)
    return name


def _save_pointer(path: Path, name: str) -> None:
    temporary = path / f"{POINTER_FILE}.tmp"
    temporary.write_text(json.dumps({"collection": name}))
    os.replace(temporary, path / POINTER_FILE)


# Users counted as written since the last copy, at most (beyond it the count only has to
# say "over USERS_INDEX_AFTER").
WRITTEN_COUNT_CAP = 1_000_000


@dataclass(slots=True)
class UsersBuild:
    written: set[str] = field(default_factory=set)  # written or deleted since the copy
    touched: set[str] = field(default_factory=set)  # of those, not carried over yet


class UsersIndex:
    """Mixed into EdgeVectorStore, whose state and helpers it uses."""

    dim: int
    _path: Path
    _users_name: str
    _users_dir: str
    _users: EdgeShard | None
    _users_build: UsersBuild | None
    _users_written: set[str]
    _users_flush_lock: asyncio.Lock
    _build_lock: asyncio.Lock
    last_users_index_build: BuildPhases | None

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T: ...
        def _shards(self) -> tuple[Items, EdgeShard]: ...

    def _init_users_index(self) -> None:
        self._users_dir = self._users_name  # an index build's copy once swapped in
        self._users_build = None
        self._users_written = set()  # since the last index build's copy
        self._users_flush_lock = asyncio.Lock()  # held while the users are copied
        self.last_users_index_build = None

    def _record_user_writes(self, user_ids: Iterable[str]) -> None:
        ids = set(user_ids)
        if len(self._users_written) < WRITTEN_COUNT_CAP:
            self._users_written |= ids
        if self._users_build is not None:
            self._users_build.written |= ids
            self._users_build.touched |= ids

    async def unindexed_users(self) -> int:
        """Users outside the HNSW index (searched exactly), at least: the engine counts a
        user written again after a build as indexed still (the old version it deleted is
        still in the index), so the users written since the copy are counted here too (not
        across a restart, which counts new users only)."""
        info = await self._run(self._shards()[1].info)
        engine = int(info.points_count) - int(info.indexed_vectors_count)
        return max(engine, len(self._users_written))

    async def count_users(self) -> int:
        return int((await self._run(self._shards()[1].info)).points_count)

    async def flush_users(self) -> None:
        # The users collection has no write-ahead log (edge_shards.USERS_WAL).
        async with self._users_flush_lock:
            await self._run(self._shards()[1].flush)

    async def build_users_index(self) -> BuildPhases:
        """Index a copy of the users collection in another process and swap it in; -> when
        each step ended. The worker's own engine calls stay short: the flush, the copy's
        load and the carry-over, in chunks."""
        async with self._build_lock:
            phases = BuildPhases(time.perf_counter())
            copy = await self._copy_users()
            phases.mark("copied")
            indexed: EdgeShard | None = None
            try:
                phases.build = await index_in_another_process(copy, self.dim, USERS)
                phases.mark("indexed")
                indexed = await self._run(open_shard, copy, self.dim, indexed=False)
                phases.mark("loaded")
                replaced, directory = await self._carry_over_and_swap_users(indexed, copy.name)
                phases.mark("swapped")
            except BaseException:
                if self._users is not indexed:  # else swapped in, and only then cancelled
                    self._users_build = None
                    if indexed is not None:
                        await self._run(indexed.close)
                    await at_low_priority(shutil.rmtree, copy, ignore_errors=True)
                raise
            # The copy is the collection now, whatever happens to the old one (a restart
            # deletes what is left of it).
            await retire_shard(self._run, replaced, USER_INDEX_FIELDS, self._path / directory)
            phases.mark("closed")
            await at_low_priority(shutil.rmtree, self._path / directory, ignore_errors=True)
            phases.mark("removed")
            self.last_users_index_build = phases
            return phases

    async def _copy_users(self) -> Path:
        async with self._users_flush_lock:
            self._users_build = UsersBuild()  # before the flush: every later write is recorded
            await self._run(self._shards()[1].flush)
            copy = self._path / f"{self._users_name}-{secrets.token_hex(4)}"
            # Another thread than the loop's: reads and writes go on meanwhile; the users
            # they touch are carried over.
            await at_low_priority(shutil.copytree, self._path / self._users_dir, copy)
            return copy

    async def _carry_over_and_swap_users(
        self, indexed: EdgeShard, name: str
    ) -> tuple[EdgeShard, str]:
        """-> the collection replaced and its directory."""
        live, build = self._shards()[1], self._users_build
        assert build is not None
        await self._carry_over_passes(live, indexed, build)
        await self._run(indexed.flush)  # what was carried so far: the final flush is short
        await self._carry_over_passes(live, indexed, build)
        try:  # one synchronous step: no write, read or flush in between
            _carry_over_users(live, indexed, sorted(build.touched))
            indexed.flush()
            _save_pointer(self._path, name)
        except Exception as exc:  # Edge raises bare Exception for every engine error
            raise StoreError(f"users index swap: {exc}") from exc
        replaced = self._users_dir
        self._users, self._users_dir, self._users_build = indexed, name, None
        self._users_written = build.written  # carried over: outside the new index
        return live, replaced

    async def _carry_over_passes(
        self, live: EdgeShard, indexed: EdgeShard, build: UsersBuild
    ) -> None:
        for _ in range(CARRY_OVER_PASSES):
            if len(build.touched) <= CARRY_OVER_CHUNK:
                return
            user_ids = sorted(build.touched)
            build.touched.clear()  # the writes made during this pass are recorded again
            for start in range(0, len(user_ids), CARRY_OVER_CHUNK):
                chunk = user_ids[start : start + CARRY_OVER_CHUNK]
                await self._run(_carry_over_users, live, indexed, chunk)


def _carry_over_users(source: EdgeShard, target: EdgeShard, user_ids: Sequence[str]) -> None:
    """Make `target` hold what `source` holds of these users (written or deleted)."""
    if not user_ids:
        return
    points = list[PointId](user_point_ids(user_ids))
    records = source.retrieve(points, with_payload=True, with_vector=[VECTOR_NAME])
    kept = [Point(r.id, r.vector or {}, r.payload or {}) for r in records]
    if kept:
        target.update(UpdateOperation.upsert_points(kept))
    gone = list[PointId](set(points) - {r.id for r in records})
    if gone:
        target.update(UpdateOperation.delete_points(gone))
