"""Opening, creating and removing Qdrant Edge shards: one directory per collection.

These run on the store's thread (Edge is synchronous)."""

from __future__ import annotations

import shutil
from pathlib import Path

from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    PayloadSchemaType,
    UpdateOperation,
)

from worker.store.payload import CATEGORY_FIELD, CREATED_AT_FIELD, VECTOR_NAME

# Written by EdgeShard.create; its presence means the directory holds a shard to load.
_CONFIG_FILE = "edge_config.json"
# Item collections filter on these.
_ITEM_INDEXES = (
    (CATEGORY_FIELD, PayloadSchemaType.Keyword),
    (CREATED_AT_FIELD, PayloadSchemaType.Float),
)


def edge_config(dim: int) -> EdgeConfig:
    return EdgeConfig(vectors={VECTOR_NAME: EdgeVectorParams(size=dim, distance=Distance.Cosine)})


def open_shard(directory: Path, dim: int, *, indexed: bool) -> EdgeShard:
    """Load the shard in `directory`, or create it there; `indexed`: an item collection."""
    if (directory / _CONFIG_FILE).exists():
        # Passing the config makes Edge check it (e.g. the dimension) against the data.
        shard = EdgeShard.load(str(directory), edge_config(dim))
    else:
        directory.mkdir(parents=True, exist_ok=True)
        shard = EdgeShard.create(str(directory), edge_config(dim))
    if indexed:
        existing = shard.info().payload_schema
        for field, schema in _ITEM_INDEXES:
            if field not in existing:
                shard.update(UpdateOperation.create_field_index(field, schema))
    return shard


def close_shard(shard: EdgeShard) -> None:
    shard.flush()
    shard.close()


def remove_shard(shard: EdgeShard | None, directory: Path) -> None:
    """Close `shard` (if open) and delete its directory."""
    if shard is not None:
        shard.close()
    shutil.rmtree(directory, ignore_errors=True)
