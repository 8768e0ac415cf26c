"""The Edge store keeps its data in a directory that outlives the process's store object."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from worker.store import (
    EdgeVectorStore,
    Interaction,
    ItemRecord,
    SearchRequest,
    StoreError,
    UserState,
)

DIM = 8


def unit(*components: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(components)] = components
    return vector / np.linalg.norm(vector)


async def test_items_and_users_survive_close_and_reopen(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path, DIM)
    await first.open()
    await first.upsert_items(
        [
            ItemRecord(item_id="a", vector=unit(1), category="news", created_at=5.0),
            ItemRecord(item_id="b", vector=unit(0, 1)),
            ItemRecord(item_id="gone", vector=unit(0, 0, 1)),
        ]
    )
    await first.delete_items(["gone"])
    history = [Interaction(item_id="a", type="view", weight=0.5, ts=7.0, event_id="e")]
    await first.upsert_users(
        [
            UserState(user_id="u1", history=history, seen=["a"], vector=unit(1), updated_at=7.0),
            UserState(user_id="u2"),
        ]
    )
    await first.close()

    second = EdgeVectorStore(tmp_path, DIM)
    await second.open()
    try:
        assert await second.count_items() == 2
        vectors = await second.get_item_vectors(["a", "b", "gone"])
        assert set(vectors) == {"a", "b"}
        np.testing.assert_allclose(vectors["a"], unit(1), atol=1e-6)
        [hits] = await second.search_items(
            [SearchRequest(vector=unit(1), limit=5, categories=["news"], created_after=1.0)]
        )
        assert [hit.item_id for hit in hits] == ["a"]
        users = await second.get_users(["u1", "u2"])
        assert users["u1"].history == history
        assert users["u1"].vector is not None
        np.testing.assert_allclose(users["u1"].vector, unit(1), atol=1e-6)
        assert users["u2"].vector is None
    finally:
        await second.close()


async def test_each_collection_lives_in_its_own_directory(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM, items_collection="it", users_collection="us")
    await store.open()
    await store.close()

    # Beside them, the registry of item spaces (and their latest counts).
    assert set(await asyncio.to_thread(os.listdir, tmp_path)) == {"it", "us", "item-spaces.json"}


async def test_reopening_with_another_dimension_is_refused(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM)
    await store.open()
    await store.upsert_items([ItemRecord(item_id="a", vector=unit(1))])
    await store.close()

    with pytest.raises(StoreError):
        await EdgeVectorStore(tmp_path, DIM * 2).open()


async def test_calls_on_a_closed_store_raise_store_error(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM)
    await store.open()
    await store.close()

    with pytest.raises(StoreError):
        await store.count_items()


async def test_a_reopened_store_warms_its_item_cache_up_to_its_size(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path, DIM)
    await first.open()
    await first.upsert_items(
        [ItemRecord(item_id=str(n), vector=unit(1, n), category="c") for n in range(5)]
    )
    await first.close()

    small = EdgeVectorStore(tmp_path, DIM, item_cache_size=3)
    await small.open()
    try:
        assert len(small._item_cache) == 3  # bounded by its size
        hits = (await small.search_items([SearchRequest(unit(1), 5, with_vectors=True)]))[0]
        # Items beyond the warmed ones are still found, with their fields and vectors.
        assert sorted(h.item_id for h in hits) == ["0", "1", "2", "3", "4"]
        assert all(h.category == "c" and h.vector is not None for h in hits)
    finally:
        await small.close()
