import numpy as np

from worker.covisitation import CoVisitation
from worker.reasons import (
    UserEvidence,
    explain,
    favourite_category,
    nearest_liked,
    nearest_liked_many,
)
from worker.store import ScoredItem

LIKED = [("h1", np.array([1.0, 0.0], np.float32)), ("h2", np.array([0.0, 1.0], np.float32))]


def _item(
    item_id: str, vector: list[float], category: str | None = None, created_at: float = 0.0
) -> ScoredItem:
    return ScoredItem(item_id, 0.5, category, (), created_at, 0.0, np.array(vector, np.float32))


def _explain(items: list[ScoredItem], **overrides: object) -> list[list[dict[str, str]]]:
    evidence = UserEvidence(
        nearest=overrides.pop("nearest", [None] * len(items)),  # type: ignore[arg-type]
        partners=overrides.pop("partners", {}),  # type: ignore[arg-type]
        categories=overrides.pop("categories", None),  # type: ignore[arg-type]
    )
    kwargs: dict[str, object] = {
        "trending": {},
        "now": 1000.0,
        "new_within_s": 100.0,
        "favourite": None,
        **overrides,
    }
    return explain(items, evidence, **kwargs)  # type: ignore[arg-type]


def test_each_item_names_the_liked_item_nearest_to_it() -> None:
    items = [_item("a", [0.8, 0.6]), _item("b", [0.6, 0.8])]
    nearest = nearest_liked(items, LIKED)
    assert nearest == ["h1", "h2"]
    assert _explain(items, nearest=nearest) == [
        [{"kind": "similar_to", "item_id": "h1"}],
        [{"kind": "similar_to", "item_id": "h2"}],
    ]


def test_a_batch_is_explained_user_by_user_whatever_their_history_lengths() -> None:
    items = [_item("a", [0.8, 0.6]), _item("b", [0.6, 0.8])]
    out = nearest_liked_many([items, items, items[:1]], [LIKED, LIKED[1:], []])
    assert out == [["h1", "h2"], ["h2", "h2"], [None]]


def test_an_item_without_a_vector_or_a_user_without_likes_gets_no_similar_reason() -> None:
    assert nearest_liked([ScoredItem("a", 0.5)], LIKED) == [None]
    assert nearest_liked([_item("a", [1.0, 0.0])], []) == [None]
    assert nearest_liked([_item("h1", [1.0, 0.0])], LIKED) == [None], "not similar to itself"


def test_co_visited_items_name_the_recent_item_they_are_consumed_with() -> None:
    covisitation = CoVisitation(neighbours=4)
    covisitation.add("a", ["h2"])
    covisitation.add("a", ["h2"])
    covisitation.add("a", ["h1"])
    partners = covisitation.strongest_partners(["a", "b"], ["h1", "h2"])
    assert partners == {"a": "h2"}, "an item consumed with none of them is left out"
    reasons = _explain([_item("a", [1.0, 0.0])], partners=partners)
    assert reasons == [[{"kind": "also_consumed_with", "item_id": "h2"}]]
    assert covisitation.strongest_partners(["a"], ["unknown"]) == {}


def test_trending_new_and_category_reasons_follow_the_signals() -> None:
    items = [
        _item("t", [1.0, 0.0], "horror", created_at=0.0),
        _item("n", [1.0, 0.0], "comedy", created_at=950.0),
    ]
    reasons = _explain(items, trending={"t": 1.0}, favourite="horror")
    assert reasons == [
        [{"kind": "trending"}, {"kind": "category_match", "category": "horror"}],
        [{"kind": "new"}],
    ]
    asked = _explain(items, categories=("comedy",), favourite="horror")
    assert asked[1] == [{"kind": "new"}, {"kind": "category_match", "category": "comedy"}]


def test_the_favourite_category_is_the_most_liked_and_ties_go_to_the_latest() -> None:
    assert favourite_category(["a", "b", "b", None]) == "b"
    assert favourite_category(["a", "b"]) == "b"
    assert favourite_category([None]) is None
