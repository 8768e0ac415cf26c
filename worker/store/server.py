"""VectorStore on a Qdrant server through AsyncQdrantClient (or its local mode for tests).

Same vector name, payload layout and filters as the Edge store (see payload.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
from qdrant_client import AsyncQdrantClient
from qdrant_client import models as m

from worker.rules import MAX_PINNED, ItemRules, rules_payload
from worker.store.base import (
    ItemRecord,
    Scored,
    ScoredItem,
    SearchRequest,
    StoreError,
    StoreUnavailable,
    UserState,
    point_ids,
)
from worker.store.base import point_id as derive_point_id
from worker.store.payload import (
    BLOCKED_FROM_FIELD,
    CATEGORY_FIELD,
    CREATED_AT_FIELD,
    ITEM_SPACE_FIELD,
    OWN_RULES_FIELD,
    PARTITION_FIELD,
    PIN_SLOT_FIELD,
    RULE_OVERRIDE_FIELD,
    SCORED_FIELDS,
    VECTOR_NAME,
    item_payload,
    item_point_ids,
    named_vector,
    own_rules_of,
    query_limit,
    scored_item,
    user_payload,
    user_point_ids,
    user_state,
    vector_list,
)

# Transport failures (connection refused, timeouts, gRPC UNAVAILABLE) are the server's,
# not the request's: they are retried. Names, not imports: httpx and grpc are the client's.
_UNAVAILABLE = ("ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout",
                "RemoteProtocolError", "ReadError", "WriteError", "TimeoutException",
                "ResponseHandlingException", "_InactiveRpcError", "AioRpcError")  # fmt: skip


def _unavailable(exc: BaseException) -> bool:
    for cause in (exc, exc.__cause__, exc.__context__):
        if cause is None:
            continue
        if isinstance(cause, OSError | TimeoutError) or type(cause).__name__ in _UNAVAILABLE:
            return True
        status = getattr(cause, "status_code", None)
        if isinstance(status, int) and status in (502, 503, 504):
            return True
    return False


@contextmanager
def _store_errors(action: str) -> Iterator[None]:
    # The client raises transport, HTTP, gRPC and (local mode) ValueError; callers see one of
    # two types: unavailable (retried) or a failed request.
    try:
        yield
    except Exception as exc:
        kind = StoreUnavailable if _unavailable(exc) else StoreError
        raise kind(f"qdrant {action}: {exc}") from exc


class QdrantServerStore:
    """`url` for a real server (e.g. "http://qdrant:6333"); `location=":memory:"` for tests."""

    def __init__(
        self,
        dim: int,
        *,
        url: str | None = None,
        location: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        items_collection: str = "items",
        users_collection: str = "users",
        hnsw_ef: int = 128,
    ) -> None:
        self.dim = dim
        self._items = items_collection
        self._users = users_collection
        self._hnsw_ef = hnsw_ef
        # The client takes whole seconds.
        self._client = AsyncQdrantClient(
            url=url, location=location, api_key=api_key, timeout=max(1, round(timeout_s))
        )

    @property
    def item_space(self) -> str:
        # One shared items collection; its space is not tracked (re-embedding into a new
        # collection is the embedded store's for now).
        return ""

    def holds_item_space(self, space: str) -> bool:
        return True

    async def open(self) -> None:
        vectors = {VECTOR_NAME: m.VectorParams(size=self.dim, distance=m.Distance.COSINE)}
        with _store_errors("open"):
            for name in (self._items, self._users):
                if not await self._client.collection_exists(name):
                    await self._client.create_collection(name, vectors_config=vectors)
            indexed = (await self._client.get_collection(self._items)).payload_schema
            for field, schema in (
                (CATEGORY_FIELD, m.PayloadSchemaType.KEYWORD),
                (CREATED_AT_FIELD, m.PayloadSchemaType.FLOAT),
                (BLOCKED_FROM_FIELD, m.PayloadSchemaType.FLOAT),
                (PIN_SLOT_FIELD, m.PayloadSchemaType.INTEGER),
                (RULE_OVERRIDE_FIELD, m.PayloadSchemaType.INTEGER),
            ):
                if field not in indexed:
                    await self._client.create_payload_index(self._items, field, schema, wait=True)
            # The fan-out's filters: unindexed, each is checked against the users' payloads.
            indexed = (await self._client.get_collection(self._users)).payload_schema
            for field, schema in (
                (PARTITION_FIELD, m.PayloadSchemaType.INTEGER),
                (ITEM_SPACE_FIELD, m.PayloadSchemaType.KEYWORD),
            ):
                if field not in indexed:
                    await self._client.create_payload_index(self._users, field, schema, wait=True)

    async def close(self) -> None:
        with _store_errors("close"):
            await self._client.close()

    async def upsert_items(self, items: Sequence[ItemRecord]) -> None:
        if not items:
            return
        points = [
            m.PointStruct(
                id=derive_point_id("item", item.item_id),
                vector={VECTOR_NAME: vector_list(item.vector)},
                payload=item_payload(item),
            )
            for item in items
        ]
        with _store_errors("upsert items"):
            await self._client.upsert(self._items, points, wait=True)

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        selector = m.PointIdsList(points=list(item_point_ids(item_ids)))
        with _store_errors("delete items"):
            await self._client.delete(self._items, selector, wait=True)

    async def get_item_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not item_ids:
            return {}
        by_point = item_point_ids(item_ids)
        with _store_errors("retrieve items"):
            records = await self._client.retrieve(
                self._items, list(by_point), with_payload=False, with_vectors=[VECTOR_NAME]
            )
        vectors: dict[str, np.ndarray] = {}
        for record in records:
            vector = named_vector(record.vector)
            if vector is not None:
                vectors[by_point[int(record.id)]] = vector
        return vectors

    async def get_items(self, item_ids: Sequence[str]) -> dict[str, ScoredItem]:
        if not item_ids:
            return {}
        with _store_errors("retrieve items"):
            records = await self._client.retrieve(
                self._items,
                list(item_point_ids(item_ids)),
                with_payload=SCORED_FIELDS,
                with_vectors=[VECTOR_NAME],
            )
        items = (scored_item(r.payload or {}, 0.0, named_vector(r.vector)) for r in records)
        return {item.item_id: item for item in items}

    async def get_own_rules(self, item_ids: Sequence[str]) -> dict[str, ItemRules]:
        if not item_ids:
            return {}
        by_point = item_point_ids(item_ids)
        with _store_errors("retrieve item rules"):
            records = await self._client.retrieve(
                self._items, list(by_point), with_payload=[OWN_RULES_FIELD], with_vectors=False
            )
        return {by_point[int(r.id)]: own_rules_of(r.payload or {}) for r in records}

    async def set_item_rules(
        self, rules: Mapping[str, ItemRules], overridden: Collection[str] = ()
    ) -> None:
        if not rules:
            return
        existing = await self.get_own_rules(list(rules))  # set_payload would create points
        ops: list[m.UpdateOperation] = [
            m.SetPayloadOperation(
                set_payload=m.SetPayload(
                    payload=rules_payload(rules[item_id], item_id in overridden),
                    points=[derive_point_id("item", item_id)],
                )
            )
            for item_id in existing
        ]
        if ops:
            with _store_errors("set item rules"):
                await self._client.batch_update_points(self._items, ops, wait=True)

    async def overridden_items(self) -> list[str]:
        flagged = m.Filter(
            must=[m.FieldCondition(key=RULE_OVERRIDE_FIELD, match=m.MatchValue(value=1))]
        )
        ids: list[str] = []
        offset = None
        while True:
            with _store_errors("scroll overridden items"):
                records, offset = await self._client.scroll(
                    self._items,
                    scroll_filter=flagged,
                    limit=1000,
                    offset=offset,
                    with_payload=["item_id"],
                    with_vectors=False,
                )
            ids += [str((r.payload or {})["item_id"]) for r in records]
            if offset is None:
                return ids

    async def pinned_items(self) -> list[ScoredItem]:
        pinned = m.Filter(
            must_not=[m.IsEmptyCondition(is_empty=m.PayloadField(key=PIN_SLOT_FIELD))]
        )
        with _store_errors("scroll pinned items"):
            records, _ = await self._client.scroll(
                self._items,
                scroll_filter=pinned,
                limit=MAX_PINNED,
                with_payload=SCORED_FIELDS,
                with_vectors=[VECTOR_NAME],
            )
        return [scored_item(r.payload or {}, 0.0, named_vector(r.vector)) for r in records]

    async def count_items(self) -> int:
        with _store_errors("count items"):
            return (await self._client.count(self._items, exact=True)).count

    async def probe(self) -> None:
        try:
            await self._client.get_collection(self._items)
        except Exception as exc:
            raise StoreUnavailable(f"qdrant probe: {exc}") from exc

    async def search_items(self, requests: Sequence[SearchRequest]) -> list[list[ScoredItem]]:
        if not requests:
            return []
        with _store_errors("search items"):
            answers = await self._client.query_batch_points(
                self._items, [self._query(request) for request in requests]
            )
        return [
            [
                scored_item(hit.payload or {}, hit.score, named_vector(hit.vector))
                if request.with_vectors
                else scored_item(hit.payload or {}, hit.score)
                for hit in answer.points
            ][: request.limit]
            for request, answer in zip(requests, answers, strict=True)
        ]

    async def search_candidates(self, requests: Sequence[SearchRequest]) -> list[Scored]:
        return [Scored.of(hits) for hits in await self.search_items(requests)]

    async def search_users(
        self,
        vectors: Sequence[np.ndarray],
        limit: int,
        partitions: Sequence[int] | None = None,
        item_space: str | None = None,
    ) -> list[list[tuple[str, float]]]:
        if not vectors:
            return []
        must: list[m.Condition] = []
        if partitions is not None:
            must.append(
                m.FieldCondition(key=PARTITION_FIELD, match=m.MatchAny(any=list(partitions)))
            )
        if item_space is not None:
            must.append(
                m.FieldCondition(key=ITEM_SPACE_FIELD, match=m.MatchValue(value=item_space))
            )
        only = m.Filter(must=must) if must else None
        queries = [
            m.QueryRequest(
                query=vector_list(vector),
                using=VECTOR_NAME,
                filter=only,
                limit=query_limit(limit),
                params=m.SearchParams(hnsw_ef=self._hnsw_ef),
                with_payload=["user_id"],
                with_vector=False,
            )
            for vector in vectors
        ]
        with _store_errors("search users"):
            answers = await self._client.query_batch_points(self._users, queries)
        return [
            [(str((hit.payload or {})["user_id"]), float(hit.score)) for hit in answer.points][
                :limit
            ]
            for answer in answers
        ]

    async def get_users(
        self, user_ids: Sequence[str], *, with_vectors: bool = True
    ) -> dict[str, UserState]:
        if not user_ids:
            return {}
        with _store_errors("retrieve users"):
            records = await self._client.retrieve(
                self._users,
                list(user_point_ids(user_ids)),
                with_payload=True,
                with_vectors=[VECTOR_NAME] if with_vectors else False,
            )
        states = (user_state(r.payload or {}, named_vector(r.vector)) for r in records)
        return {state.user_id: state for state in states}

    async def delete_users(self, user_ids: Sequence[str]) -> None:
        if not user_ids:
            return
        selector = m.PointIdsList(points=list(user_point_ids(user_ids)))
        with _store_errors("delete users"):
            await self._client.delete(self._users, selector, wait=True)

    async def flush_users(self) -> None:
        """Nothing to do: the server's write-ahead log holds every acknowledged write."""

    async def upsert_users(self, users: Sequence[UserState]) -> None:
        if not users:
            return
        # No vector yet: a point with an empty named-vector map, as in the Edge store.
        points = [
            m.PointStruct(
                id=derive_point_id("user", user.user_id),
                vector={} if user.vector is None else {VECTOR_NAME: vector_list(user.vector)},
                payload=user_payload(user),
            )
            for user in users
        ]
        with _store_errors("upsert users"):
            await self._client.upsert(self._users, points, wait=True)

    def _query(self, request: SearchRequest) -> m.QueryRequest:
        must: list[m.Condition] = []
        if request.categories is not None:
            must.append(
                m.FieldCondition(key=CATEGORY_FIELD, match=m.MatchAny(any=list(request.categories)))
            )
        if request.created_after is not None:
            must.append(
                m.FieldCondition(key=CREATED_AT_FIELD, range=m.Range(gte=request.created_after))
            )
        excluded: list[m.ExtendedPointId] = list(point_ids("item", request.exclude_item_ids))
        must_not: list[m.Condition] = [m.HasIdCondition(has_id=excluded)] if excluded else []
        if request.available_at is not None:
            # Unavailable or expired (worker/rules.py: one number says both).
            blocked = m.Range(lte=request.available_at)
            must_not.append(m.FieldCondition(key=BLOCKED_FROM_FIELD, range=blocked))
        return m.QueryRequest(
            query=vector_list(request.vector),
            using=VECTOR_NAME,
            filter=m.Filter(must=must or None, must_not=must_not or None)
            if must or must_not
            else None,
            limit=query_limit(request.limit),
            params=m.SearchParams(hnsw_ef=self._hnsw_ef),
            with_payload=SCORED_FIELDS,
            with_vector=[VECTOR_NAME] if request.with_vectors else False,
        )
