"""A replaced collection is closed in steps: its pages released with the GIL free, its
payload indexes dropped, then the close; nothing it holds is lost on the way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from qdrant_edge import EdgeShard, Point, UpdateOperation

from worker.store.edge_retire import release_pages, retire_shard
from worker.store.edge_shards import USER_INDEX_FIELDS, open_shard
from worker.store.payload import ITEM_SPACE_FIELD, PARTITION_FIELD, VECTOR_NAME

DIM = 16
POINTS = 400


def _filled(directory: Path) -> tuple[EdgeShard, np.ndarray]:
    shard = open_shard(directory, DIM, indexed=False)
    vectors = np.random.default_rng(3).standard_normal((POINTS, DIM)).astype(np.float32)
    points = [
        Point(n + 1, {VECTOR_NAME: v.tolist()}, {PARTITION_FIELD: n % 4, ITEM_SPACE_FIELD: "s"})
        for n, v in enumerate(vectors)
    ]
    shard.update(UpdateOperation.upsert_points(points))
    shard.flush()
    return shard, vectors


def _resident_mapped_bytes(directory: Path) -> int:
    """Bytes of this process's mappings of files under `directory` in its page tables."""
    prefix, total, inside = f"{directory.resolve()}/", 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                inside = len(fields) == 6 and fields[5].startswith(prefix)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def _stored(shard: EdgeShard) -> dict[int, tuple[list[float], object]]:
    records = shard.retrieve(
        list(range(1, POINTS + 1)), with_payload=True, with_vector=[VECTOR_NAME]
    )
    return {int(r.id): (r.vector[VECTOR_NAME], r.payload[PARTITION_FIELD]) for r in records}


def test_released_pages_are_unmapped_and_the_data_stays_readable(tmp_path: Path) -> None:
    directory = tmp_path / "users"
    shard, vectors = _filled(directory)
    before = _stored(shard)
    assert _resident_mapped_bytes(directory) > 0

    assert release_pages(directory) > 0

    assert _resident_mapped_bytes(directory) == 0
    assert _stored(shard) == before  # read back from the files
    np.testing.assert_allclose(
        [before[n + 1][0] for n in range(POINTS)],
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )
    shard.close()


async def _on_the_loop(fn: Callable[..., object], *args: object) -> object:
    return fn(*args)


async def test_a_retired_shard_is_closed_without_its_indexes_and_its_points_kept(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "users"
    shard, _ = _filled(directory)
    before = _stored(shard)
    assert set(shard.info().payload_schema) == set(USER_INDEX_FIELDS)

    await retire_shard(_on_the_loop, shard, USER_INDEX_FIELDS, directory)

    reopened = EdgeShard.load(str(directory))
    try:
        assert reopened.info().payload_schema == {}
        assert _stored(reopened) == before
    finally:
        reopened.close()
