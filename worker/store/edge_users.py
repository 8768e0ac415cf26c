"""The embedded store's users collection: reads, writes and the new-item fan-out's search.
The engine calls run on the event loop (see edge.py); `UserStates` serves reads
from the cache of the states written last (user_cache.py) where it can."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from qdrant_edge import (
    AcornSearchParams,
    EdgeShard,
    FieldCondition,
    Filter,
    MatchAny,
    MatchValue,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    SearchParams,
    UpdateOperation,
)

from worker.store.base import UserState
from worker.store.base import point_id as derive_point_id
from worker.store.edge_items import Items
from worker.store.edge_query import Condition, PointId
from worker.store.payload import (
    ITEM_SPACE_FIELD,
    PARTITION_FIELD,
    VECTOR_NAME,
    named_vector,
    query_limit,
    user_payload,
    user_point_ids,
    user_state,
    vector_list,
)
from worker.store.user_cache import UserCache

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UserQuery:
    limit: int
    partitions: Sequence[int] | None  # only users of these events partitions
    item_space: str | None  # only users whose vector was made in this item space
    hnsw_ef: int


def get_users(
    shard: EdgeShard, user_ids: Sequence[str], with_vectors: bool = True
) -> dict[str, UserState]:
    # Without the vector a read costs less than half (256 floats made Python objects, then
    # an array): 10-13 against 26 µs a user of a few events (load_tests' users).
    records = shard.retrieve(
        list(user_point_ids(user_ids)),
        with_payload=True,
        with_vector=[VECTOR_NAME] if with_vectors else False,
    )
    states = (user_state(r.payload or {}, named_vector(r.vector)) for r in records)
    return {state.user_id: state for state in states}


def upsert_users(shard: EdgeShard, users: Sequence[UserState]) -> None:
    # A user without a vector is a point with no named vectors (an empty map): Edge, like
    # the server, stores it, and an upsert replaces any vector the point had before.
    points = [
        Point(
            derive_point_id("user", user.user_id),
            {} if user.vector is None else {VECTOR_NAME: vector_list(user.vector)},
            user_payload(user),
        )
        for user in users
    ]
    shard.update(UpdateOperation.upsert_points(points))


def delete_users(shard: EdgeShard, user_ids: Sequence[str]) -> None:
    """Delete the users' points (unknown ids are no error)."""
    points = list[PointId](user_point_ids(user_ids))
    shard.update(UpdateOperation.delete_points(points))


async def search_users_in_steps(
    run: Callable[..., Awaitable[Any]],
    shard: EdgeShard,
    vectors: Sequence[np.ndarray],
    query: UserQuery,
) -> list[list[tuple[str, float]]]:
    """`search_users` in one engine call (`run`: on the event loop) per item and per
    partition asked for, merged: until the users are indexed (edge_users_index.py), and for
    those written since, the collection is searched exactly, so a call holds the GIL while
    it scans the users it filters to (with the payload indexes, at 300k users 35 CPU ms for
    one partition of 4); a burst of new items, or every partition, in one call would hold
    it that long for each."""
    steps = [None] if query.partitions is None else [[p] for p in query.partitions]
    answers: list[list[tuple[str, float]]] = []
    for vector in vectors:
        found: list[tuple[str, float]] = []
        for partitions in steps:
            step = replace(query, partitions=partitions)
            found += (await run(search_users, shard, [vector], step))[0]
        answers.append(sorted(found, key=lambda hit: -hit[1])[: query.limit])
    return answers


# A search for the users of some partitions, once the users are indexed: the graph walk
# that keeps to the filtered users also looks two hops out, or it strands in a graph whose
# links it mostly may not follow (at 1M users, for 1 partition of 4: recall@20 0.985 against
# 0.31 without).
_ACORN = AcornSearchParams(enable=True)


def search_users(
    shard: EdgeShard, vectors: Sequence[np.ndarray], query: UserQuery
) -> list[list[tuple[str, float]]]:
    must: list[Condition] = []
    if query.partitions is not None:
        must.append(FieldCondition(PARTITION_FIELD, match=MatchAny(list(query.partitions))))
    if query.item_space is not None:
        must.append(FieldCondition(ITEM_SPACE_FIELD, match=MatchValue(query.item_space)))
    batch = QueryBatchRequest(
        [
            QueryRequest(
                limit=query_limit(query.limit),
                query=Query.Nearest(vector_list(vector), using=VECTOR_NAME),
                filter=Filter(must=must) if must else None,
                params=SearchParams(
                    hnsw_ef=query.hnsw_ef, acorn=None if query.partitions is None else _ACORN
                ),
                with_payload=["user_id"],
                with_vector=False,
            )
            for vector in vectors
        ]
    )
    return [
        [(str((hit.payload or {})["user_id"]), float(hit.score)) for hit in hits][: query.limit]
        for hits in shard.query_batch(batch)
    ]


class UserStates:
    """Mixed into EdgeVectorStore: its users collection behind a write-through cache."""

    hnsw_ef: int
    user_cache: UserCache

    if TYPE_CHECKING:

        def _shards(self) -> tuple[Items, EdgeShard]: ...
        async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T: ...
        def _record_user_writes(self, user_ids: Iterable[str]) -> None: ...

    async def get_users(
        self, user_ids: Sequence[str], *, with_vectors: bool = True
    ) -> dict[str, UserState]:
        found, missing = self.user_cache.lookup(user_ids)
        if missing:
            read = await self._run(get_users, self._shards()[1], missing, with_vectors)
            if with_vectors:  # the cache holds whole states only
                # Right after the read: the store's one thread keeps reads and writes in
                # order.
                self.user_cache.put(read.values())
            found.update(read)
        return found

    async def upsert_users(self, users: Sequence[UserState]) -> None:
        if users:
            self._record_user_writes(u.user_id for u in users)
            try:
                await self._run(upsert_users, self._shards()[1], users)
            except BaseException:  # the engine may have the new states or the old ones
                self.user_cache.drop(u.user_id for u in users)
                raise
            self.user_cache.put(users)

    async def delete_users(self, user_ids: Sequence[str]) -> None:
        if user_ids:
            self._record_user_writes(user_ids)
            try:
                await self._run(delete_users, self._shards()[1], user_ids)
            finally:
                self.user_cache.drop(user_ids)

    async def search_users(
        self,
        vectors: Sequence[np.ndarray],
        limit: int,
        partitions: Sequence[int] | None = None,
        item_space: str | None = None,
    ) -> list[list[tuple[str, float]]]:
        if not vectors:
            return []
        query = UserQuery(limit, partitions, item_space, self.hnsw_ef)
        users = self._shards()[1]
        return await search_users_in_steps(self._run, users, vectors, query)
