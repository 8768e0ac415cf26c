"""Vector stores: the contract (base), embedded Qdrant Edge and a Qdrant server."""

from typing import TYPE_CHECKING, Any

from worker.store.base import (
    Interaction,
    ItemRecord,
    Scored,
    ScoredItem,
    SearchRequest,
    StoreError,
    StoreUnavailable,
    UserState,
    VectorStore,
    point_id,
)
from worker.store.edge import EdgeVectorStore

if TYPE_CHECKING:
    from worker.store.server import QdrantServerStore


def __getattr__(name: str) -> Any:
    # qdrant-client takes 0.65 s to import, which the store's own processes (an index
    # build, an items collection) would otherwise pay at every start for nothing.
    if name == "QdrantServerStore":
        from worker.store.server import QdrantServerStore

        return QdrantServerStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EdgeVectorStore",
    "Interaction",
    "ItemRecord",
    "QdrantServerStore",
    "Scored",
    "ScoredItem",
    "SearchRequest",
    "StoreError",
    "StoreUnavailable",
    "UserState",
    "VectorStore",
    "point_id",
]
