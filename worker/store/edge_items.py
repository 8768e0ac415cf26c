"""An items collection's engine calls, with plain values in and out.

The engine's own request and record objects cannot be pickled, so the store speaks to an
items collection through this narrow interface instead: the same calls then run on a shard
in the worker's process (`ItemsShard`) or in a process of its own (`edge_items_process.py`),
where the engine's long calls (the load of an indexed copy at a swap, the close of a big
collection) hold another process's GIL, not the worker's.

A record is `(point id, payload or None, vector or None)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from qdrant_edge import (
    CountRequest,
    EdgeShard,
    FieldCondition,
    Filter,
    IsEmptyCondition,
    MatchValue,
    Point,
    QueryBatchRequest,
    ScrollRequest,
    UpdateOperation,
)

from worker.store.base import SearchRequest
from worker.store.edge_query import PointId, edge_query
from worker.store.edge_shards import Quantization, open_shard
from worker.store.payload import (
    PIN_SLOT_FIELD,
    RULE_OVERRIDE_FIELD,
    VECTOR_NAME,
    named_values,
    named_vector,
)

Record = tuple[int, dict[str, Any] | None, np.ndarray | None]
# (point id, vector, payload)
NewPoint = tuple[int, list[float], dict[str, Any]]
# Payload fields to return: a list of names, all (True) or none (False).
Fields = list[str] | bool
# Items a scroll keeps: all, those whose rules an operator overrode, the pinned ones.
ScrollKind = Literal["all", "overridden", "pinned"]


@dataclass(frozen=True, slots=True)
class Scroll:
    kind: ScrollKind
    limit: int
    fields: Fields
    with_vector: bool = False
    offset: PointId | None = None


@dataclass(frozen=True, slots=True)
class SearchParams:
    hnsw_ef: int
    oversampling: float  # 0: the vectors are not quantised


class Items(Protocol):
    """What the store asks of an items collection (each call one engine call or a few)."""

    def upsert(self, points: Sequence[NewPoint]) -> None: ...
    def delete(self, points: Sequence[int]) -> None: ...
    def set_payloads(
        self, payloads: Sequence[tuple[int, dict[str, Any]]], lenient: bool
    ) -> None: ...
    def retrieve(
        self, points: Sequence[int], fields: Fields, with_vector: bool
    ) -> list[Record]: ...
    def scroll(self, request: Scroll) -> tuple[list[Record], PointId | None]: ...
    def search(
        self, requests: Sequence[SearchRequest], params: SearchParams
    ) -> list[list[tuple[int, float]]]: ...
    def count(self, exact: bool) -> int: ...
    def indexing(self) -> tuple[int, int]: ...
    def flush(self) -> None: ...
    def optimize(self) -> bool: ...
    def close(self, flush: bool = True) -> None: ...


class ItemsShard:
    """`Items` on a shard in this process (calls run on the event loop: see edge.py)."""

    def __init__(self, shard: EdgeShard) -> None:
        self.shard = shard

    @classmethod
    def open(cls, directory: Path, dim: int, quantization: Quantization) -> ItemsShard:
        return cls(open_shard(directory, dim, indexed=True, quantization=quantization))

    def upsert(self, points: Sequence[NewPoint]) -> None:
        if points:
            ops = [Point(point, {VECTOR_NAME: vector}, data) for point, vector, data in points]
            self.shard.update(UpdateOperation.upsert_points(ops))

    def delete(self, points: Sequence[int]) -> None:
        if points:
            self.shard.update(UpdateOperation.delete_points(list[PointId](points)))

    def set_payloads(self, payloads: Sequence[tuple[int, dict[str, Any]]], lenient: bool) -> None:
        """`lenient`: a point that does not exist is skipped (the engine refuses it)."""
        for point, payload in payloads:
            op = UpdateOperation.set_payload(list[PointId]([point]), payload)
            if lenient:
                with contextlib.suppress(Exception):
                    self.shard.update(op)
            else:
                self.shard.update(op)

    def retrieve(self, points: Sequence[int], fields: Fields, with_vector: bool) -> list[Record]:
        return [_record(r) for r in self._retrieve(points, fields, with_vector)]

    def retrieve_packed(
        self, points: Sequence[int], fields: Fields, with_vector: bool
    ) -> PackedRecords:
        return pack_records(self._retrieve(points, fields, with_vector))

    def _retrieve(self, points: Sequence[int], fields: Fields, with_vector: bool) -> list[Any]:
        return list(
            self.shard.retrieve(
                list[PointId](points),
                with_payload=fields,
                with_vector=[VECTOR_NAME] if with_vector else False,
            )
        )

    def scroll(self, request: Scroll) -> tuple[list[Record], PointId | None]:
        records, offset = self._scroll(request)
        return [_record(r) for r in records], offset

    def scroll_packed(self, request: Scroll) -> tuple[PackedRecords, PointId | None]:
        records, offset = self._scroll(request)
        return pack_records(records), offset

    def _scroll(self, request: Scroll) -> tuple[list[Any], PointId | None]:
        records, offset = self.shard.scroll(
            ScrollRequest(
                offset=request.offset,
                limit=request.limit,
                filter=_SCROLL_FILTERS[request.kind](),
                with_payload=request.fields,
                with_vector=[VECTOR_NAME] if request.with_vector else False,
            )
        )
        return list(records), offset

    def search(
        self, requests: Sequence[SearchRequest], params: SearchParams
    ) -> list[list[tuple[int, float]]]:
        batch = [edge_query(r, params.hnsw_ef, params.oversampling) for r in requests]
        answers = self.shard.query_batch(QueryBatchRequest(batch))
        return [[(int(hit.id), hit.score) for hit in hits] for hits in answers]

    def search_packed(self, requests: Sequence[SearchRequest], params: SearchParams) -> PackedHits:
        return pack_hits(self.search(requests, params))

    def count(self, exact: bool) -> int:
        return int(self.shard.count(CountRequest(exact=exact)))

    def indexing(self) -> tuple[int, int]:
        """-> (points, points in the HNSW index)."""
        info = self.shard.info()
        return int(info.points_count), int(info.indexed_vectors_count)

    def flush(self) -> None:
        self.shard.flush()

    def optimize(self) -> bool:
        return bool(self.shard.optimize())

    def close(self, flush: bool = True) -> None:
        if flush:
            self.shard.flush()
        self.shard.close()


# Search answers as three arrays (hits per request, point ids, scores): pickled 40x faster
# than lists of tuples (a batch of 50 answers: 0.77 ms to pickle and load as tuples).
PackedHits = tuple[np.ndarray, np.ndarray, np.ndarray]


def pack_hits(answers: Sequence[Sequence[tuple[int, float]]]) -> PackedHits:
    hits = [hit for found in answers for hit in found]
    return (
        np.fromiter((len(found) for found in answers), np.int64, len(answers)),
        np.fromiter((point for point, _ in hits), np.uint64, len(hits)),
        np.fromiter((score for _, score in hits), np.float32, len(hits)),
    )


def unpack_hits(packed: PackedHits) -> list[list[tuple[int, float]]]:
    counts, points, scores = packed
    pairs = list(zip(points.tolist(), scores.tolist(), strict=True))
    ends = np.cumsum(counts).tolist()
    return [pairs[end - count : end] for end, count in zip(ends, counts.tolist(), strict=True)]


# Records as (point ids, payloads, the vectors as one [n, dim] array, which records have
# one): a single buffer to pickle rather than an array per record. 3,000 items of 256-d
# (a batch's search hits outside the item cache at a million items) took 38 ms to pickle
# and load as arrays, 6 ms as one with its rows copied out.
PackedRecords = tuple[list[int], list[Any], np.ndarray | None, list[bool]]


def pack_records(records: Sequence[Any]) -> PackedRecords:
    """The engine's records packed (see `PackedRecords`)."""
    values = [named_values(r.vector) for r in records]
    rows = [v for v in values if v is not None]
    return (
        [int(r.id) for r in records],
        [r.payload for r in records],
        np.array(rows, dtype=np.float32) if rows else None,
        [v is not None for v in values],
    )


def unpack_records(packed: PackedRecords) -> list[Record]:
    """Each vector a copy of its row: a cached item must not keep the whole batch's array."""
    points, payloads, matrix, has_vector = packed
    rows = iter(matrix if matrix is not None else ())
    return [
        (point, payload, next(rows).copy() if has else None)
        for point, payload, has in zip(points, payloads, has_vector, strict=True)
    ]


def _record(record: Any) -> Record:
    return int(record.id), record.payload, named_vector(record.vector)


_SCROLL_FILTERS = {
    "all": lambda: None,
    "overridden": lambda: Filter(must=[FieldCondition(RULE_OVERRIDE_FIELD, match=MatchValue(1))]),
    "pinned": lambda: Filter(must_not=[IsEmptyCondition(PIN_SLOT_FIELD)]),
}
