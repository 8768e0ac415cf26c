"""Opening, creating and removing Qdrant Edge shards: one directory per collection.

These run on the event loop (Edge is synchronous and holds the GIL throughout: edge.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FloatIndexParams,
    IntegerIndexParams,
    KeywordIndexParams,
    Memory,
    ScalarQuantizationConfig,
    ScalarType,
    TurboQuantBitSize,
    TurboQuantQuantizationConfig,
    UpdateOperation,
)

from worker.store.payload import (
    BLOCKED_FROM_FIELD,
    CATEGORY_FIELD,
    CREATED_AT_FIELD,
    ITEM_SPACE_FIELD,
    PARTITION_FIELD,
    PIN_SLOT_FIELD,
    RULE_OVERRIDE_FIELD,
    VECTOR_NAME,
)

# How indexed item vectors are compressed for the HNSW search (searches rescore with the
# originals): TurboQuant 4-bit, int8 scalar, or not at all.
Quantization = Literal["turbo4", "int8", "none"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
# What edge_index.py builds for a copy of the users collection, in place of a quantisation.
USERS = "users"

# Written by EdgeShard.create; its presence means the directory holds a shard to load.
_CONFIG_FILE = "edge_config.json"
# Item collections filter on these. Read into the heap, the indexes were 85% of an indexed
# copy's load at the swap (300k items: 0.49 s with them, 0.07 s without), a stall of the
# whole worker since the engine holds the GIL; so all but the category's are memory-mapped.
# The category's stays in the heap (filtered searches were 10% dearer with it mapped) and
# alone gets payload-aware graph links (a selective filter needs them for recall); the
# others filter out few items, or serve scrolls, and links would only cost build time.
_MAPPED = Memory.Cold
# An item collection's memory-mapped parts (vectors, compressed vectors, payloads, mapped
# indexes) are read into the page cache as the engine loads it, not page by page as
# searches first touch them: a worker restarted over a million items otherwise spent its
# first seconds in disk reads (engine calls alone, 64 searches with vectors a batch, cold:
# 3.7 s, 1.5 s, 0.9 s, then ~0.6 s for dozens of batches, still 0.3 s after 60; read in
# first, 2.8 s for 2 GB, then 0.17-0.20 s from the first batch). Applies to segments
# built with it: an older collection's next index build.
_WARMED = Memory.Cached
_ITEM_INDEXES: tuple[
    tuple[str, KeywordIndexParams | FloatIndexParams | IntegerIndexParams], ...
] = (
    (CATEGORY_FIELD, KeywordIndexParams()),
    (CREATED_AT_FIELD, FloatIndexParams(memory=_WARMED, enable_hnsw=False)),
    (BLOCKED_FROM_FIELD, FloatIndexParams(memory=_WARMED, enable_hnsw=False)),
    (PIN_SLOT_FIELD, IntegerIndexParams(memory=_WARMED, enable_hnsw=False)),
    (RULE_OVERRIDE_FIELD, IntegerIndexParams(memory=_WARMED, enable_hnsw=False)),
)
ITEM_INDEX_FIELDS = tuple(field for field, _ in _ITEM_INDEXES)


# The users collection's fan-out search filters on these. Without an index the engine
# checks a filter against each user's stored payload, history included: at 100k users a
# search for the users of 4 partitions in one item space took 795 CPU ms, against 10 ms
# unfiltered (load_tests/users_bench.py). Memory-mapped like the items' (at 100k users an
# indexed copy loaded in 0.03 s, against 0.20 with them in the heap; and a flush of 1,600
# users' writes took 61 ms against 220), and without payload-aware graph links: the
# engine skips them for a value held by more than a few percent of the points (4 / the
# graph's mean degree), which a worker's partitions are, so the fan-out's filtered search
# walks the graph with ACORN instead (edge_users.py).
_USER_INDEXES: tuple[tuple[str, KeywordIndexParams | IntegerIndexParams], ...] = (
    (PARTITION_FIELD, IntegerIndexParams(memory=_MAPPED, enable_hnsw=False)),
    (ITEM_SPACE_FIELD, KeywordIndexParams(memory=_MAPPED, enable_hnsw=False)),
)
USER_INDEX_FIELDS = tuple(field for field, _ in _USER_INDEXES)


# The engine's search pool: a thread per CPU by default, reading a shard's segments in
# parallel. One thread made a batch of 16 searches 16-25% cheaper in CPU (2,000 items on 2
# cores, indexed or not), and faster too: a worker scales out by processes, and its
# shards hold one indexed segment plus the few new items.
SEARCH_THREADS = 1


# The users collection keeps no write-ahead log, as Kafka Streams' RocksDB stores keep
# none: the user-state changelog is the log. A kill -9 leaves the collection as its last
# flush left it (consistent: the engine loads it), and the worker reads the changelog into
# it from the local checkpoint, which is saved only after a flush (changelog/users.py).
# The log wrote every state twice: without it, saving 16 users took 1.16 CPU ms against
# 1.71 (20,000 users of 50 events each).
USERS_WAL = False


# Every build merges the items into one indexed segment. Qdrant's default keeps a segment
# per CPU and caps their size, so a rebuild indexed the new items as a segment of their own
# and every search then walked two graphs: at 1M items plus 50k new, engine calls took 0.62
# ms per query against 0.27 with one segment; merging made that build 76 s (the new items
# alone: 7 s), in the build's own process.
_NO_SEGMENT_SIZE_LIMIT_KB = 1_000_000_000


def edge_config(
    dim: int,
    *,
    indexed: bool = False,
    quantization: Quantization = "none",
    wal: bool | None = None,
) -> EdgeConfig:
    """`indexed`: an items collection, whose every segment `optimize` indexes (the store
    decides when to: edge_collections.py), not only those over the engine's 10 MB default.
    `quantization`: compressed vectors for the graph search, rescored with the originals;
    both memory-mapped (see `_compressed`). At a million items, engine calls alone,
    TurboQuant 4-bit loaded in 0.35 s against 0.96 s for int8 with the originals on the
    heap and searched 15% cheaper at a higher recall; int8 built 1.7x cheaper and searched
    1.5x cheaper than no quantisation at 100k.
    `wal`: whether a new shard keeps a write-ahead log (None: the engine's default, and for
    an existing shard what it was made with; the engine refuses to change it)."""
    if not indexed:
        return EdgeConfig(
            vectors={VECTOR_NAME: EdgeVectorParams(size=dim, distance=Distance.Cosine)},
            max_search_threads=SEARCH_THREADS,
            wal_enabled=wal,
        )
    compressed = _compressed(quantization)
    vectors = {VECTOR_NAME: EdgeVectorParams(size=dim, distance=Distance.Cosine, memory=_WARMED)}
    return EdgeConfig(
        vectors=vectors,
        optimizers=EdgeOptimizersConfig(
            indexing_threshold=1,
            default_segment_number=1,
            max_segment_size=_NO_SEGMENT_SIZE_LIMIT_KB,
        ),
        quantization_config=compressed,
        max_search_threads=SEARCH_THREADS,
        payload_memory=_WARMED,
    )


def _compressed(
    quantization: Quantization,
) -> TurboQuantQuantizationConfig | ScalarQuantizationConfig | None:
    """Compressed vectors memory-mapped, read from the page cache the build filled: on the
    heap, copying them in was a third of the load at the swap (1M items plus 50k, engine
    calls: 0.52 s mapped against 0.69 s, turbo4), for no search gain (0.38 and 0.41 ms per
    query against 0.37 and 0.45 in two side-by-side runs)."""
    if quantization == "turbo4":
        return TurboQuantQuantizationConfig(memory=_WARMED, bits=TurboQuantBitSize.Bits4)
    if quantization == "int8":
        return ScalarQuantizationConfig(type=ScalarType.Int8, quantile=0.99, memory=_WARMED)
    return None


def users_index_config(dim: int) -> EdgeConfig:
    """An indexed copy of the users collection: one HNSW-indexed segment, its vectors
    memory-mapped (read from the page cache the build filled), kept through later loads;
    the users written after it go to a small segment searched exactly."""
    return EdgeConfig(
        vectors={VECTOR_NAME: EdgeVectorParams(size=dim, distance=Distance.Cosine, memory=_MAPPED)},
        optimizers=EdgeOptimizersConfig(
            indexing_threshold=1,
            default_segment_number=1,
            max_segment_size=_NO_SEGMENT_SIZE_LIMIT_KB,
        ),
        max_search_threads=SEARCH_THREADS,
    )


def index_users_copy(directory: Path, dim: int) -> EdgeShard:
    """Load a copy of the users collection to be indexed, an older collection's payload
    indexes remade mapped (see `_USER_INDEXES`); the caller optimises it."""
    shard = EdgeShard.load(str(directory), users_index_config(dim))
    existing = shard.info().payload_schema
    for field, schema in _USER_INDEXES:
        held = existing[field].params if field in existing else None
        if (getattr(held, "memory", None), getattr(held, "enable_hnsw", None)) != (
            schema.memory,
            schema.enable_hnsw,
        ):  # an older collection's, in the heap
            shard.update(UpdateOperation.delete_field_index(field))
            shard.update(UpdateOperation.create_field_index(field, schema))
    return shard


def open_shard(
    directory: Path, dim: int, *, indexed: bool, quantization: Quantization = "none"
) -> EdgeShard:
    """Load the shard in `directory`, or create it there; `indexed`: an item collection.
    A new users collection has no write-ahead log (see `USERS_WAL`)."""
    config = edge_config(dim, indexed=indexed, quantization=quantization)
    if (directory / _CONFIG_FILE).exists():
        # Passing the config makes Edge check it (e.g. the dimension) against the data.
        shard = EdgeShard.load(str(directory), config)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        if indexed:
            config = edge_config(dim, indexed=True, quantization=quantization)
        else:  # vectors memory-mapped, as an indexed copy keeps them (see `_USER_INDEXES`)
            vectors = EdgeVectorParams(size=dim, distance=Distance.Cosine, memory=_MAPPED)
            config = EdgeConfig(
                vectors={VECTOR_NAME: vectors},
                max_search_threads=SEARCH_THREADS,
                wal_enabled=USERS_WAL,
            )
        shard = EdgeShard.create(str(directory), config)
    existing = shard.info().payload_schema
    for field, schema in _ITEM_INDEXES if indexed else _USER_INDEXES:
        if field not in existing:
            shard.update(UpdateOperation.create_field_index(field, schema))
    return shard


def close_shard(shard: EdgeShard) -> None:
    shard.flush()
    shard.close()
