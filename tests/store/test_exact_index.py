"""The in-process exact item index: its rows follow puts and removes, and its searches
honour every filter a search request has."""

from __future__ import annotations

import numpy as np
import pytest

from worker.rules import DEFAULT_RULES, ItemRules
from worker.store import ScoredItem, SearchRequest, exact_index
from worker.store.base import point_id
from worker.store.edge_cache import CachedItem, ItemCache, cached
from worker.store.exact_index import ExactIndex, exact_index_of

DIM = 4


def unit(*components: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(components)] = components
    return vector / np.linalg.norm(vector)


def entry(
    item_id: str,
    vector: np.ndarray | None,
    category: str | None = None,
    created_at: float = 0.0,
    rules: ItemRules = DEFAULT_RULES,
) -> CachedItem:
    return cached(ScoredItem(item_id, 0.0, category, (), created_at, 0.0, vector, rules))


def index_of(*entries: CachedItem, limit: int = 100) -> ExactIndex:
    index = ExactIndex(DIM, limit)
    for e in entries:
        assert index.put(point_id("item", e[0]), e)
    return index


def ids(index: ExactIndex, request: SearchRequest) -> list[str]:
    names = {point_id("item", name): name for name in "abcdefgh"}
    return [names[point] for point, _ in index.search([request])[0]]


def test_search_returns_the_nearest_items_best_first_with_their_cosines() -> None:
    index = index_of(entry("a", unit(1)), entry("b", unit(1, 1)), entry("c", unit(0, 1)))
    [hits] = index.search([SearchRequest(unit(1) * 3, limit=2)])
    assert [point for point, _ in hits] == [point_id("item", "a"), point_id("item", "b")]
    np.testing.assert_allclose([score for _, score in hits], [1.0, np.sqrt(0.5)], atol=1e-6)


def test_search_honours_categories_freshness_availability_and_exclusions() -> None:
    index = index_of(
        entry("a", unit(1), "news", created_at=10.0),
        entry("b", unit(1, 0.1), "sport", created_at=10.0),
        entry("c", unit(1, 0.2), "news", created_at=1.0),
        entry("d", unit(1, 0.3), "news", created_at=10.0, rules=ItemRules(expires_at=50.0)),
        entry("e", unit(1, 0.4), None, created_at=10.0),
    )
    query = unit(1)
    assert ids(index, SearchRequest(query, limit=9, categories=["news"])) == ["a", "c", "d"]
    assert ids(index, SearchRequest(query, limit=9, categories=["film"])) == []
    assert ids(index, SearchRequest(query, limit=9, created_after=5.0)) == ["a", "b", "d", "e"]
    assert ids(index, SearchRequest(query, limit=9, available_at=50.0)) == ["a", "b", "c", "e"]
    assert ids(index, SearchRequest(query, limit=9, available_at=49.0)) == list("abcde")
    assert ids(index, SearchRequest(query, limit=9, exclude_item_ids=["a", "x"])) == list("bcde")


def test_each_request_of_a_batch_gets_its_own_filters_and_limit() -> None:
    index = index_of(entry("a", unit(1), "news"), entry("b", unit(0, 1), "sport"))
    answers = index.search(
        [
            SearchRequest(unit(1), limit=1),
            SearchRequest(unit(1), limit=5, categories=["sport"]),
            SearchRequest(unit(0, 1), limit=5, exclude_item_ids=["b"]),
            SearchRequest(unit(0, 1), limit=0),
        ]
    )
    a, b = point_id("item", "a"), point_id("item", "b")
    assert [[p for p, _ in hits] for hits in answers] == [[a], [b], [a], [b]]


def test_a_removed_item_is_never_found_and_the_last_row_takes_its_place() -> None:
    index = index_of(entry("a", unit(1)), entry("b", unit(0, 1)), entry("c", unit(0, 0, 1)))
    index.remove(point_id("item", "a"))
    index.remove(point_id("item", "zzz"))  # unknown: nothing happens
    assert len(index) == 2
    assert sorted(ids(index, SearchRequest(unit(1, 1, 1), limit=9))) == ["b", "c"]
    assert ids(index, SearchRequest(unit(0, 0, 1), limit=1)) == ["c"]


def test_putting_an_item_again_replaces_its_vector_and_fields() -> None:
    index = index_of(entry("a", unit(1), "news"))
    index.put(point_id("item", "a"), entry("a", unit(0, 1), "sport"))
    assert len(index) == 1
    [[(_, score)]] = index.search([SearchRequest(unit(0, 1), limit=1, categories=["sport"])])
    assert abs(score - 1.0) < 1e-6


def test_an_item_without_a_vector_is_never_a_hit() -> None:
    index = index_of(entry("a", unit(1)), entry("b", None))
    index.put(point_id("item", "a"), entry("a", None))
    assert len(index) == 0
    assert index.search([SearchRequest(unit(1), limit=5)]) == [[]]


def test_a_rules_change_moves_when_an_item_is_blocked_and_its_hits_carry_the_rules() -> None:
    index = index_of(entry("a", unit(1)), entry("b", unit(1, 1)))
    index.set_rules(point_id("item", "a"), ItemRules(available=False))
    assert ids(index, SearchRequest(unit(1), limit=5, available_at=10.0)) == ["b"]
    boosted = ItemRules(boost=2.0)
    index.set_rules(point_id("item", "a"), boosted)
    assert ids(index, SearchRequest(unit(1), limit=5, available_at=10.0)) == ["a", "b"]
    [found] = index.candidates([SearchRequest(unit(1), limit=5)])
    assert [item.rules for item in found.items] == [boosted, DEFAULT_RULES]
    index.set_rules(point_id("item", "a"), ItemRules())
    [found] = index.candidates([SearchRequest(unit(1), limit=1)])
    assert found.items[0].rules is DEFAULT_RULES, "the default as the singleton filters test"


def test_candidates_are_the_search_hits_with_one_shared_item_each() -> None:
    index = index_of(
        entry("a", unit(1), "news", created_at=5.0), entry("b", unit(1, 1)), entry("c", unit(0, 1))
    )
    index.remove(point_id("item", "b"))  # "c" takes b's row
    requests = [SearchRequest(unit(1, 0.5), limit=2), SearchRequest(unit(1), limit=1)]
    hits = index.search(requests)
    found = index.candidates(requests)
    names = {point_id("item", name): name for name in "abc"}
    assert [[i.item_id for i in f.items] for f in found] == [[names[p] for p, _ in h] for h in hits]
    assert [f.scores for f in found] == [[s for _, s in h] for h in hits]
    assert found[0].items[0] is found[1].items[0], "one object per item, not per hit"
    assert index.items([point_id("item", "a"), point_id("item", "b")]) == {
        point_id("item", "a"): found[0].items[0]
    }
    a = found[0].items[0]
    assert (a.category, a.created_at, a.vector is not None) == ("news", 5.0, True)


def test_put_refuses_an_item_past_the_limit_but_replaces_existing_ones() -> None:
    index = index_of(entry("a", unit(1)), entry("b", unit(0, 1)), limit=2)
    assert not index.put(point_id("item", "c"), entry("c", unit(0, 0, 1)))
    assert index.put(point_id("item", "a"), entry("a", unit(0, 0, 1)))
    assert len(index) == 2


def test_rows_grow_past_the_first_capacity_and_large_batches_go_in_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    index = ExactIndex(DIM, 1000)
    for n, vector in enumerate(vectors):
        index.put(n, entry(str(n), vector))
    queries = rng.standard_normal((50, DIM)).astype(np.float32)
    monkeypatch.setattr(exact_index, "CELLS_PER_CHUNK", 1000)  # 3 queries a chunk
    answers = index.search([SearchRequest(q, limit=7) for q in queries])
    unit_rows = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for query, hits in zip(queries, answers, strict=True):
        expected = np.argsort(-(unit_rows @ (query / np.linalg.norm(query))))[:7]
        assert [point for point, _ in hits] == expected.tolist()


def test_an_index_is_made_of_a_cache_only_when_it_holds_the_whole_collection() -> None:
    cache = ItemCache(10)
    cache.put(1, entry("a", unit(1)))
    assert exact_index_of(cache, DIM, 10) is None  # not known to be complete
    cache.complete = True
    made = exact_index_of(cache, DIM, 10)
    assert made is not None and 1 in made
    assert exact_index_of(cache, DIM, 0) is None  # over the limit
    for point in range(2, 12):  # one evicted: the cache no longer holds it all
        cache.put(point, entry(str(point), unit(0, 1)))
    assert not cache.complete and exact_index_of(cache, DIM, 100) is None
