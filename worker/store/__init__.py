"""Vector stores: the contract (base), embedded Qdrant Edge and a Qdrant server."""

from worker.store.base import (
    Interaction,
    ItemRecord,
    ScoredItem,
    SearchRequest,
    StoreError,
    StoreUnavailable,
    UserState,
    VectorStore,
    point_id,
)
from worker.store.edge import EdgeVectorStore
from worker.store.server import QdrantServerStore

__all__ = [
    "EdgeVectorStore",
    "Interaction",
    "ItemRecord",
    "QdrantServerStore",
    "ScoredItem",
    "SearchRequest",
    "StoreError",
    "StoreUnavailable",
    "UserState",
    "VectorStore",
    "point_id",
]
