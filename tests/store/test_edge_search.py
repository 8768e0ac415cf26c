"""The embedded store's two search paths give the same answers: the exact scan in the
worker's process (a catalogue of up to EXACT_SEARCH_MAX_ITEMS) and the engine's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.rules import ItemRules
from worker.store import EdgeVectorStore, ItemRecord, Scored, SearchRequest

DIM = 16
CATEGORIES = ["news", "sport", "film", "music"]


def catalogue(rng: np.random.Generator, n: int) -> list[ItemRecord]:
    rules = [ItemRules(), ItemRules(available=False), ItemRules(expires_at=500.0)]
    return [
        ItemRecord(
            item_id=f"i{k}",
            vector=rng.standard_normal(DIM).astype(np.float32),
            category=CATEGORIES[k % 4] if k % 7 else None,
            created_at=float(rng.integers(0, 1000)),
            rules=rules[0] if k % 5 else rules[k % 3],
        )
        for k in range(n)
    ]


def requests(rng: np.random.Generator, n: int, items: int) -> list[SearchRequest]:
    out = []
    for k in range(n):
        seen = [f"i{j}" for j in rng.choice(items, size=k % 40, replace=False)]
        out.append(
            SearchRequest(
                vector=rng.standard_normal(DIM).astype(np.float32),
                limit=[50, 10, 1, 0][k % 4],
                exclude_item_ids=seen,
                categories=[None, ["news"], ["sport", "film"], ["none-such"]][k % 4],
                created_after=[None, 300.0][k % 2],
                available_at=[None, 100.0, 900.0][k % 3],
                with_vectors=True,
            )
        )
    return out


async def answers(store: EdgeVectorStore, asked: list[SearchRequest]) -> list[list[str]]:
    return [[hit.item_id for hit in hits] for hits in await store.search_items(asked)]


def fields(found: Scored) -> list[tuple[object, ...]]:
    return [
        (i.item_id, i.category, i.tags, i.created_at, i.popularity, i.rules) for i in found.items
    ]


async def test_the_exact_scan_and_the_engine_give_the_same_answers(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    items = catalogue(rng, 400)
    exact = EdgeVectorStore(tmp_path / "exact", DIM)
    engine = EdgeVectorStore(tmp_path / "engine", DIM, exact_search_max_items=0)
    for store in (exact, engine):
        await store.open()
        await store.upsert_items(items)
        await store.delete_items([f"i{k}" for k in range(0, 400, 9)])
        changed = {"i1": ItemRules(available=False), "i5": ItemRules(), "i2": ItemRules(boost=3.0)}
        await store.set_item_rules(changed)
    try:
        assert exact.exact_search and not engine.exact_search
        asked = requests(rng, 120, 400)
        found = await exact.search_items(asked)
        assert await answers(exact, asked) == await answers(engine, asked)
        scores = [[hit.score for hit in hits] for hits in found]
        expected = [[hit.score for hit in hits] for hits in await engine.search_items(asked)]
        for mine, theirs in zip(scores, expected, strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-5)
        assert sum(len(hits) for hits in found) > 1000  # the filters left work to compare
        assert all(hit.vector is not None for hits in found for hit in hits)
        # The events path's form: the same items, fields and rules (the exact scan's are its
        # own copies, kept through the rules changes).
        mine_scored = await exact.search_candidates(asked)
        theirs_scored = await engine.search_candidates(asked)
        assert [fields(s) for s in mine_scored] == [fields(s) for s in theirs_scored]
        for mine_one, theirs_one in zip(mine_scored, theirs_scored, strict=True):
            np.testing.assert_allclose(mine_one.scores, theirs_one.scores, atol=1e-5)
        assert any(i.rules.boost == 3.0 for s in mine_scored for i in s.items)
        wanted = [f"i{k}" for k in range(0, 60)] + ["missing"]
        mine_items, theirs_items = await exact.get_items(wanted), await engine.get_items(wanted)
        assert fields(Scored.of(list(mine_items.values()))) == fields(
            Scored.of(list(theirs_items.values()))
        )
    finally:
        await exact.close()
        await engine.close()


async def test_a_catalogue_growing_past_the_limit_goes_to_the_engine(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM, exact_search_max_items=50)
    await store.open()
    try:
        items = catalogue(np.random.default_rng(5), 60)
        await store.upsert_items(items[:50])
        assert store.exact_search
        await store.upsert_items(items[50:])
        assert not store.exact_search
        [hits] = await store.search_items([SearchRequest(items[55].vector, limit=1)])
        assert [hit.item_id for hit in hits] == ["i55"]
    finally:
        await store.close()


async def test_a_reopened_store_scans_only_a_catalogue_its_cache_holds_whole(
    tmp_path: Path,
) -> None:
    first = EdgeVectorStore(tmp_path, DIM)
    await first.open()
    await first.upsert_items(catalogue(np.random.default_rng(2), 30))
    await first.close()
    for cache_size, scans in [(100, True), (30, True), (29, False), (10, False)]:
        store = EdgeVectorStore(tmp_path, DIM, item_cache_size=cache_size)
        await store.open()
        try:
            assert store.exact_search is scans
            [hits] = await store.search_items([SearchRequest(np.ones(DIM), limit=30)])
            assert len(hits) == 30
        finally:
            await store.close()


async def test_exact_search_can_be_switched_off_and_on_for_one_store(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM)
    await store.open()
    try:
        await store.upsert_items(catalogue(np.random.default_rng(8), 100))
        asked = requests(np.random.default_rng(9), 20, 100)
        scanned = await answers(store, asked)
        assert not store.set_exact_search(False)
        assert await answers(store, asked) == scanned
        assert store.set_exact_search(True)
    finally:
        await store.close()
