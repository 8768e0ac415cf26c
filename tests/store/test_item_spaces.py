"""The embedded store keeps one items collection per item space: writes follow their
vectors' space, searches see the active one, and a switch replaces it in one step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from worker.store import EdgeVectorStore, ItemRecord, SearchRequest

DIM = 8
OLD, NEW = "fusion:2", "fusion:3"


def unit(*components: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(components)] = components
    return vector / np.linalg.norm(vector)


def item(item_id: str, space: str, *components: float) -> ItemRecord:
    return ItemRecord(item_id=item_id, vector=unit(*components), model_version=space)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EdgeVectorStore]:
    opened = EdgeVectorStore(tmp_path, DIM)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def found(store: EdgeVectorStore) -> list[str]:
    [hits] = await store.search_items([SearchRequest(unit(1), 10)])
    return sorted(hit.item_id for hit in hits)


async def test_a_store_of_unknown_space_takes_the_space_of_its_first_versioned_item(
    store: EdgeVectorStore,
) -> None:
    assert store.item_space == ""
    await store.upsert_items([item("a", OLD, 1)])
    assert store.item_space == OLD


async def test_items_of_a_space_the_store_does_not_hold_are_dropped(store: EdgeVectorStore) -> None:
    await store.upsert_items([item("a", OLD, 1), item("b", NEW, 1, 1)])
    assert await found(store) == ["a"]


async def test_searches_see_the_old_space_until_the_switch_then_only_the_new_one(
    store: EdgeVectorStore, tmp_path: Path
) -> None:
    await store.upsert_items([item("a", OLD, 1), item("b", OLD, 1, 1)])
    await store.begin_item_space(NEW)
    await store.upsert_items([item("new", NEW, 1, 0.5)])  # the items path, mid re-embed
    assert await store.upsert_reembedded([item("a", NEW, 1), item("b", NEW, 1, 1)]) == 2
    assert await found(store) == ["a", "b"]
    assert (await store.get_item_vectors(["new"])) == {}

    await store.switch_item_space()

    assert (store.item_space, store.pending_space) == (NEW, None)
    assert await found(store) == ["a", "b", "new"]
    [hits] = await store.search_items([SearchRequest(unit(1, 0.5), 1, with_vectors=True)])
    np.testing.assert_allclose(hits[0].vector, unit(1, 0.5), atol=1e-6)  # type: ignore[arg-type]
    # Only the active collection is left on disk.
    assert len(list(tmp_path.glob("items*"))) == 1  # noqa: ASYNC240


async def test_a_re_embed_never_overwrites_what_the_items_path_wrote_or_deleted_meanwhile(
    store: EdgeVectorStore,
) -> None:
    await store.upsert_items([item("kept", OLD, 1), item("gone", OLD, 1, 1)])
    await store.begin_item_space(NEW)
    await store.upsert_items([item("kept", NEW, 0, 1)])  # newer content, embedded anew
    await store.delete_items(["gone"])
    written = await store.upsert_reembedded([item("kept", NEW, 1), item("gone", NEW, 1, 1)])
    await store.switch_item_space()

    assert written == 0
    vectors = await store.get_item_vectors(["kept", "gone"])
    assert list(vectors) == ["kept"]
    np.testing.assert_allclose(vectors["kept"], unit(0, 1), atol=1e-6)


async def test_a_reopened_store_finds_its_active_and_pending_spaces(tmp_path: Path) -> None:
    first = EdgeVectorStore(tmp_path, DIM)
    await first.open()
    await first.upsert_items([item("a", OLD, 1)])
    await first.begin_item_space(NEW)
    await first.upsert_reembedded([item("a", NEW, 1, 1)])
    await first.close()

    second = EdgeVectorStore(tmp_path, DIM)
    await second.open()
    try:
        assert (second.item_space, second.pending_space) == (OLD, NEW)
        assert await second.count_items(pending=True) == 1
        await second.abandon_item_space()
        assert second.pending_space is None
        assert await found(second) == ["a"]
    finally:
        await second.close()


async def test_a_rebuild_of_the_active_space_keeps_answering_and_then_replaces_it(
    store: EdgeVectorStore,
) -> None:
    await store.upsert_items([item("a", OLD, 1)])
    await store.begin_item_space(OLD)  # a rebuild: the same space, a second collection
    await store.upsert_items([item("new", OLD, 1, 1)])  # the items path writes to both
    await store.upsert_reembedded([item("a", OLD, 1), item("missing", OLD, 1, 0.5)])
    assert await found(store) == ["a", "new"]

    await store.switch_item_space()

    assert store.item_space == OLD
    assert await found(store) == ["a", "missing", "new"]


async def test_a_reopened_store_deletes_collections_a_stopped_build_or_switch_left(
    tmp_path: Path,
) -> None:
    first = EdgeVectorStore(tmp_path, DIM)
    await first.open()
    await first.upsert_items([item("a", OLD, 1)])
    await first.close()
    (tmp_path / "items-0123456789ab-abcdef").mkdir()  # an index build's copy, say

    second = EdgeVectorStore(tmp_path, DIM)
    await second.open()
    try:
        assert [p.name for p in tmp_path.glob("items*")] == ["items"]  # noqa: ASYNC240
        assert await found(second) == ["a"]
    finally:
        await second.close()
