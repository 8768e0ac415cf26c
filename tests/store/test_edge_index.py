"""The items collection is indexed in another process and swapped in: searches keep their
answers, and writes made while the index was built are in the indexed collection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from qdrant_edge import Memory

from worker.store import EdgeVectorStore, ItemRecord, SearchRequest, edge_collections, edge_query
from worker.store.edge_index import read_into_page_cache
from worker.store.edge_items import ItemsShard, SearchParams
from worker.store.edge_items_process import ItemsProcess
from worker.store.edge_shards import Quantization, edge_config

T = TypeVar("T")
DIM = 16
ITEMS = 3000


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("quantization", "items_process"),
    [("none", False), ("int8", False), ("turbo4", False), ("turbo4", True)],
)
async def test_an_index_built_in_another_process_keeps_answers_and_every_write(
    tmp_path: Path, quantization: Quantization, items_process: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ~200 writes made during the build are carried over in many engine calls.
    monkeypatch.setattr(edge_collections, "CARRY_OVER_CHUNK", 16)
    store = EdgeVectorStore(
        tmp_path, DIM, item_cache_size=0, quantization=quantization, items_process=items_process
    )
    await store.open()
    try:
        rows = vectors(ITEMS + 100)
        await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in range(ITEMS)])
        requests = [SearchRequest(rows[i], 10) for i in range(0, 200, 10)]
        assert await store.unindexed_items() == ITEMS

        async def write_meanwhile() -> None:
            for n in range(ITEMS, ITEMS + 100):
                await store.upsert_items([ItemRecord(str(n), rows[n], category="new")])
                await store.delete_items([str(n - ITEMS)])  # items 0..99 go
                await asyncio.sleep(0.005)

        await asyncio.gather(store.build_index(), write_meanwhile())

        assert await store.unindexed_items() < 100  # at most the writes after the swap
        assert await store.count_items() == ITEMS
        # The answers of an exact search over what the store now holds (items 100..3099).
        held = np.arange(100, ITEMS + 100)
        exact = [
            {str(held[j]) for j in np.argsort(-(rows[held] @ r.vector))[:10]} for r in requests
        ]
        after = [{h.item_id for h in hits} for hits in await store.search_items(requests)]
        found_right = sum(len(a & e) for a, e in zip(after, exact, strict=True))
        assert found_right >= 0.95 * 10 * len(requests)
        found = await store.get_items([str(n) for n in range(ITEMS, ITEMS + 100)])
        assert len(found) == 100 and all(i.category == "new" for i in found.values())
        assert await store.get_items([str(n) for n in range(100)]) == {}
        assert len(list(tmp_path.glob("items*"))) == 1  # noqa: ASYNC240
    finally:
        await store.close()

    reopened = EdgeVectorStore(tmp_path, DIM, quantization=quantization)
    await reopened.open()
    try:
        assert await reopened.count_items() == ITEMS
    finally:
        await reopened.close()


@pytest.mark.parametrize("items_process", [False, True])
async def test_a_re_embedded_collection_is_indexed_before_the_switch_with_its_writes(
    tmp_path: Path, items_process: bool
) -> None:
    store = EdgeVectorStore(tmp_path, DIM, item_cache_size=0, items_process=items_process)
    await store.open()
    try:
        rows = vectors(ITEMS + 50)
        await store.upsert_items([ItemRecord("old", rows[0], model_version="v1")])
        await store.begin_item_space("v2")
        await store.upsert_reembedded(
            [ItemRecord(str(i), rows[i], model_version="v2") for i in range(ITEMS)]
        )

        async def items_path_meanwhile() -> None:
            for n in range(ITEMS, ITEMS + 50):  # new items, embedded in the new space
                await store.upsert_items([ItemRecord(str(n), rows[n], model_version="v2")])
                await store.delete_items([str(n - ITEMS)])
                await asyncio.sleep(0.005)

        await asyncio.gather(store.build_index(pending=True), items_path_meanwhile())
        assert await store.unindexed_items(pending=True) < 50
        assert [h.item_id for h in (await store.search_items([SearchRequest(rows[0], 1)]))[0]] == [
            "old"
        ]

        await store.switch_item_space()

        assert await store.count_items() == ITEMS
        assert await store.get_items([str(n) for n in range(50)]) == {}
        assert len(await store.get_items([str(n) for n in range(ITEMS, ITEMS + 50)])) == 50
        assert len(list(tmp_path.glob("items*"))) == 1  # noqa: ASYNC240
    finally:
        await store.close()


async def test_every_build_leaves_the_items_in_one_indexed_segment(tmp_path: Path) -> None:
    # A segment per build would make every search walk one more graph.
    store = EdgeVectorStore(tmp_path, DIM, quantization="turbo4")
    await store.open()
    try:
        rows = vectors(3 * ITEMS, seed=1)
        segments = []
        for build in range(3):
            batch = range(build * ITEMS, (build + 1) * ITEMS)
            await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in batch])
            await store.build_index()
            info = await store._run(store._shards()[0].shard.info)  # type: ignore[attr-defined]
            segments.append(info.segments_count)
            assert info.indexed_vectors_count == info.points_count == (build + 1) * ITEMS
        assert segments[-1] == segments[0] <= 2  # the indexed one, and one for new writes
    finally:
        await store.close()
    # Qdrant's default caps a segment at 200 MB of vectors per CPU: a million 256-d items
    # would then never merge with the next build's, so the items config lifts the cap.
    optimizers = edge_config(256, indexed=True, quantization="turbo4").optimizers
    assert optimizers is not None and optimizers.default_segment_number == 1
    assert (optimizers.max_segment_size or 0) >= 10**9  # KB


def test_compressed_item_vectors_are_memory_mapped_for_a_short_load_at_the_swap() -> None:
    # Copied onto the heap, they were a third of the load that stalls the worker. Mapped
    # and read in at the load (test_edge_shards.py), from the page cache the build filled.
    for quantization in ("turbo4", "int8"):
        compressed = edge_config(256, indexed=True, quantization=quantization).quantization_config
        assert compressed is not None and compressed.memory == Memory.Cached


def test_the_built_copy_is_read_back_whole_for_the_swap_to_load_from_memory(
    tmp_path: Path,
) -> None:
    (tmp_path / "segments" / "a").mkdir(parents=True)
    (tmp_path / "segments" / "a" / "graph.bin").write_bytes(b"x" * 3_000_000)
    (tmp_path / "edge_config.json").write_text("{}")
    assert read_into_page_cache(tmp_path) == 3_000_002


async def test_searches_over_many_unindexed_items_are_split_into_short_engine_calls(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine_calls: Callable[[EdgeVectorStore], list[str]],
) -> None:
    # Every query scans every unindexed item in a call that holds the GIL: with 3,000 of them
    # and room for 7,000 scanned points a call, two queries go in each.
    store = EdgeVectorStore(tmp_path, DIM, item_cache_size=0)
    await store.open()
    calls = engine_calls(store)
    try:
        rows = vectors(ITEMS)
        await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in range(ITEMS)])
        requests = [SearchRequest(rows[i], 10) for i in range(0, 100, 10)]

        async def searched() -> tuple[list[list[tuple[str, float]]], int]:
            calls.clear()
            hits = await store.search_items(requests)
            found = [[(h.item_id, round(h.score, 5)) for h in found] for found in hits]
            return found, calls.count("search")

        whole, whole_calls = await searched()
        monkeypatch.setattr(edge_query, "SCAN_POINTS_PER_CALL", 7000)
        split, split_calls = await searched()
        assert (whole_calls, split_calls) == (1, 5)
        assert split == whole and all(
            found[0][0] == str(r) for found, r in zip(split, range(0, 100, 10), strict=True)
        )

        await store.build_index()  # nothing left to scan: one call again
        indexed, indexed_calls = await searched()
        assert indexed_calls == 1 and [f[0] for f in indexed] == [f[0] for f in whole]
    finally:
        await store.close()


@pytest.mark.parametrize("items_process", [False, True])
async def test_a_swap_waits_for_the_split_searches_reading_the_collection_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items_process: bool
) -> None:
    store = EdgeVectorStore(tmp_path, DIM, item_cache_size=0, items_process=items_process)
    await store.open()
    monkeypatch.setattr(edge_query, "SCAN_POINTS_PER_CALL", 3000)  # a call per query
    try:
        rows = vectors(ITEMS)
        await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in range(ITEMS)])
        requests = [SearchRequest(rows[i], 10) for i in range(0, 100, 10)]
        build = asyncio.create_task(store.build_index())
        searches = 0
        while not build.done():
            hits = await store.search_items(requests)  # spans the swap at some point
            assert [found[0].item_id for found in hits] == [str(i) for i in range(0, 100, 10)]
            searches += 1
        await build
        assert searches > 1 and await store.unindexed_items() == 0
    finally:
        await store.close()


async def test_a_build_cancelled_after_its_swap_keeps_the_indexed_collection(
    tmp_path: Path,
) -> None:
    # The swap is the commit point: the old collection's removal may wait (for a search
    # reading it) and be cancelled there, and must not take the new one with it.
    store = EdgeVectorStore(tmp_path, DIM)
    await store.open()
    try:
        rows = vectors(ITEMS)
        await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in range(ITEMS)])
        before = store._spaces.active.collection
        with store._reading(store._shards()[0]):  # a search still reading the old one
            build = asyncio.create_task(store.build_index())
            while store._spaces.active.collection == before:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            build.cancel()
            with pytest.raises(asyncio.CancelledError):
                await build
        assert await store.unindexed_items() == 0 and await store.count_items() == ITEMS
    finally:
        await store.close()
    reopened = EdgeVectorStore(tmp_path, DIM)
    await reopened.open()
    try:
        assert await reopened.count_items() == ITEMS and await reopened.unindexed_items() == 0
        assert len(list(tmp_path.glob("items*"))) == 1  # noqa: ASYNC240
    finally:
        await reopened.close()


async def test_an_indexed_copy_answers_the_latest_searches_before_its_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its first searches fault the mapped files in: better in an untimed warm-up.
    answered: list[tuple[int, int]] = []  # (collection, searches)
    search = ItemsShard.search

    def recorded(self: ItemsShard, requests: Sequence[SearchRequest], params: SearchParams) -> Any:
        answered.append((id(self), len(requests)))
        return search(self, requests, params)

    monkeypatch.setattr(ItemsShard, "search", recorded)
    store = EdgeVectorStore(tmp_path, DIM)
    await store.open()
    try:
        rows = vectors(ITEMS)
        await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in range(ITEMS)])
        for batch in range(1, 7):  # the first two fall out of the latest four
            await store.search_items([SearchRequest(rows[i], 10) for i in range(batch)])
        answered.clear()
        await store.build_index()
        assert answered == [(id(store._shards()[0]), n) for n in (3, 4, 5, 6)]
        # Each step's end and each warm-up batch are on record (and in the log).
        phases = store.last_index_build
        assert phases is not None and len(phases.warm_up_ms) == 4
        steps = ["copied", "indexed", "loaded", "warmed", "swapped", "removed"]
        assert list(phases.ends) == steps
        assert list(phases.ends.values()) == sorted(phases.ends.values())
        assert set(phases.build) == {
            "load_s", "optimize_s", "flush_s", "close_s", "read_back_s", "read_back_mb"
        }  # fmt: skip
    finally:
        await store.close()


async def test_a_collection_that_grows_past_items_process_from_moves_to_a_process_at_its_build(
    tmp_path: Path,
) -> None:
    # ITEMS_PROCESS=auto: where a collection opens follows its latest count.
    store = EdgeVectorStore(tmp_path, DIM, item_cache_size=0, items_process_from=ITEMS)
    await store.open()
    rows = vectors(ITEMS)
    try:
        half = ITEMS // 2
        await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in range(half)])
        await store.build_index()
        assert isinstance(store._shards()[0], ItemsShard)  # counted at 0 when the build began
        await store.upsert_items(
            [ItemRecord(str(i), rows[i], category="c") for i in range(half, ITEMS)]
        )
        assert await store.unindexed_items() == ITEMS - half  # counts ITEMS
        await store.build_index()
        assert isinstance(store._shards()[0], ItemsProcess)
        assert await store.count_items() == ITEMS
    finally:
        await store.close()
    for items_process_from, kind in ((ITEMS, ItemsProcess), (ITEMS + 1, ItemsShard)):
        reopened = EdgeVectorStore(tmp_path, DIM, items_process_from=items_process_from)
        await reopened.open()
        try:
            assert isinstance(reopened._shards()[0], kind)
            hits = await reopened.search_items([SearchRequest(rows[7], 1)])
            assert [h.item_id for h in hits[0]] == ["7"]
        finally:
            await reopened.close()
