"""Search requests for the embedded engine: filters (category, freshness, seen items)."""

from __future__ import annotations

import uuid

from qdrant_edge import (
    FieldCondition,
    Filter,
    HasIdCondition,
    HasVectorCondition,
    IsEmptyCondition,
    IsNullCondition,
    MatchAny,
    NestedCondition,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    RangeFloat,
    SearchParams,
)

from worker.store.base import SearchRequest, point_ids
from worker.store.payload import (
    BLOCKED_FROM_FIELD,
    CATEGORY_FIELD,
    CREATED_AT_FIELD,
    VECTOR_NAME,
    query_limit,
    vector_list,
)

# The engine's own unions (its stubs name them; its module does not export them).
PointId = int | uuid.UUID | str
Condition = (
    FieldCondition
    | IsEmptyCondition
    | IsNullCondition
    | HasIdCondition
    | HasVectorCondition
    | NestedCondition
    | Filter
)


# Points one engine call may scan exactly, ~50 ms of it: items outside the HNSW index are
# scanned by every query (1M of them: 27.6 ms a query), and a call holds the GIL throughout,
# so a batch of 50 in one call froze the worker for 1.3 s.
SCAN_POINTS_PER_CALL = 2_000_000


def queries_per_call(unindexed: int) -> int:
    """How many searches one engine call may take with `unindexed` items to scan each."""
    return max(1, SCAN_POINTS_PER_CALL // max(1, unindexed))


def edge_query(request: SearchRequest, hnsw_ef: int, oversampling: float = 0.0) -> QueryRequest:
    """Nearest items to the request's vector, ids and scores only, within its filters.
    `oversampling` > 0: the vectors are quantised; that many times the candidates come from
    the compressed index and are rescored with the originals."""
    rescored = (
        QuantizationSearchParams(rescore=True, oversampling=oversampling) if oversampling else None
    )
    must: list[Condition] = []
    if request.categories is not None:
        must.append(FieldCondition(CATEGORY_FIELD, match=MatchAny(list(request.categories))))
    if request.created_after is not None:
        must.append(FieldCondition(CREATED_AT_FIELD, range=RangeFloat(gte=request.created_after)))
    excluded = point_ids("item", request.exclude_item_ids)
    must_not: list[Condition] = [HasIdCondition(set[PointId](excluded))] if excluded else []
    if request.available_at is not None:
        # Unavailable or expired (worker/rules.py: one number says both).
        must_not.append(
            FieldCondition(BLOCKED_FROM_FIELD, range=RangeFloat(lte=request.available_at))
        )
    return QueryRequest(
        limit=query_limit(request.limit),
        query=Query.Nearest(vector_list(request.vector), using=VECTOR_NAME),
        filter=Filter(must=must or None, must_not=must_not or None) if must or must_not else None,
        params=SearchParams(hnsw_ef=hnsw_ef, quantization=rescored),
        with_payload=False,
        with_vector=False,
    )
