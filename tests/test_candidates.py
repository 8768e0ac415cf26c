import numpy as np
import pytest

from worker.candidates import (
    CandidateFilter,
    candidate_filter,
    catalogue_items,
    merge_candidates,
    scored_against,
    scored_per_query,
    search_request,
)
from worker.events import UserEvent
from worker.settings import SettingsError, load_settings
from worker.store import Scored, ScoredItem


def _event(ts: float, categories: tuple[str, ...] | None = None, max_age_s: float | None = None):
    return UserEvent("e", "u", "i", "click", None, ts, categories, max_age_s)


def test_search_request_excludes_everything_seen_and_asks_for_vectors() -> None:
    constraints = CandidateFilter(("news",), 5.0)
    req = search_request(np.ones(4, dtype=np.float32), ["a", "b"], k=7, constraints=constraints)
    assert req.limit == 7 and tuple(req.exclude_item_ids) == ("a", "b")
    assert (req.categories, req.created_after, req.with_vectors) == (("news",), 5.0, True)


def test_filter_comes_from_settings_narrowed_by_the_latest_events_context() -> None:
    settings = load_settings(recommend_categories=["a", "b"], freshness_window_s=100.0)
    assert candidate_filter(settings, [], 1000.0) == CandidateFilter(("a", "b"), 900.0)
    narrowed = candidate_filter(
        settings, [_event(1.0, ("x",)), _event(2.0, ("b", "c"), max_age_s=10.0)], 1000.0
    )
    assert narrowed == CandidateFilter(("b",), 990.0)
    assert candidate_filter(load_settings(), [_event(1.0)], 1000.0) == CandidateFilter()


def test_filter_allows_by_category_and_creation_time() -> None:
    constraints = CandidateFilter(("news",), 10.0)
    assert constraints.allows(ScoredItem("a", 0.0, category="news", created_at=10.0))
    assert not constraints.allows(ScoredItem("b", 0.0, category="sport", created_at=20.0))
    assert not constraints.allows(ScoredItem("c", 0.0, category="news", created_at=9.0))
    assert CandidateFilter().allows(ScoredItem("d", 0.0))


def test_merge_keeps_the_hits_and_drops_extras_seen_duplicated_or_ruled_out() -> None:
    # Hits come from the store, which applied the exclusions and constraints itself.
    found = [ScoredItem("x", 0.9), ScoredItem("y", 0.5, created_at=1.0)]
    extra = [
        *(ScoredItem("x", 0.1), ScoredItem("seen", 0.8), ScoredItem("z", 0.3)),
        ScoredItem("old", 0.9, created_at=1.0),
    ]
    hits, more = Scored.of(found), Scored.of(extra)
    merged = merge_candidates(hits, more, ["seen"], CandidateFilter(created_after=0.0))
    assert [i.item_id for i in merged.items] == ["x", "y", "z", "old"]
    assert merged.scores == [0.9, 0.5, 0.3, 0.9], "a search hit keeps its score over the extra"
    strict = merge_candidates(hits, more, ["seen"], CandidateFilter(created_after=2.0))
    assert [i.item_id for i in strict.items] == ["x", "y"]
    assert merge_candidates(hits, Scored([], []), [], CandidateFilter()) == hits


def test_fetched_items_are_scored_by_cosine_per_query_or_zero_without_one() -> None:
    items = [ScoredItem("a", 0.0, vector=np.array([2.0, 0.0], np.float32)), ScoredItem("b", 0.0)]
    queries = [np.array([0.6, 0.8], np.float32), None, np.array([-1.0, 0.0], np.float32)]
    scored = scored_against(items, queries)
    assert [row.scores for row in scored] == [
        [pytest.approx(0.6), 0.0],
        [0.0, 0.0],
        [pytest.approx(-1.0), 0.0],
    ]
    assert all(row.items == items for row in scored), "the items are shared, not copied"
    assert scored_against([], queries) == [Scored([], [])] * 3


def test_per_query_items_score_as_if_each_query_had_its_own_product() -> None:
    rng = np.random.default_rng(3)
    fetched = {
        name: ScoredItem(name, 0.0, vector=rng.normal(size=4).astype(np.float32)) for name in "abcd"
    }
    fetched["novec"] = ScoredItem("novec", 0.0)
    queries = [rng.normal(size=4).astype(np.float32), None, rng.normal(size=4).astype(np.float32)]
    wanted = [["c", "gone", "a"], ["b"], ["d", "novec", "a"]]
    scored = scored_per_query(wanted, fetched, queries)
    assert [[i.item_id for i in row.items] for row in scored] == [
        ["c", "a"],
        ["b"],
        ["d", "novec", "a"],
    ]
    for ids, query, row in zip(wanted, queries, scored, strict=True):
        alone = scored_against([fetched[i] for i in ids if i in fetched], [query])[0]
        assert row.scores == pytest.approx(alone.scores)
    assert scored_per_query([[], []], fetched, queries[:2]) == [Scored([], [])] * 2


def test_catalogue_items_keep_only_indexed_ids_in_the_given_order() -> None:
    fetched = {"b": ScoredItem("b", 0.0), "a": ScoredItem("a", 0.0)}
    assert [i.item_id for i in catalogue_items({"a": 1.0, "gone": 0.9, "b": 0.5}, fetched)] == [
        "a",
        "b",
    ]


def test_constraints_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMEND_CATEGORIES", '["Comedy", "Drama"]')
    monkeypatch.setenv("FRESHNESS_WINDOW_S", "3600")
    settings = load_settings()
    assert candidate_filter(settings, [], 10_000.0) == CandidateFilter(("Comedy", "Drama"), 6400.0)
    monkeypatch.setenv("MMR_LAMBDA", "1.5")
    with pytest.raises(SettingsError, match="MMR_LAMBDA"):
        load_settings()
