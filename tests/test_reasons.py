import numpy as np

from worker.covisitation import CoVisitation
from worker.reasons import UserEvidence, explain, favourite_category, nearest_liked
from worker.store import ScoredItem


def _item(
    item_id: str, vector: list[float], category: str | None = None, created_at: float = 0.0
) -> ScoredItem:
    return ScoredItem(item_id, 0.5, category, (), created_at, 0.0, np.array(vector, np.float32))


def _evidence(**overrides: object) -> UserEvidence:
    fields: dict[str, object] = {
        "liked": [
            ("h1", np.array([1.0, 0.0], np.float32)),
            ("h2", np.array([0.0, 1.0], np.float32)),
        ],
        "recent": ["h1", "h2"],
        "covisited": {},
        "categories": None,
    }
    return UserEvidence(**{**fields, **overrides})  # type: ignore[arg-type]


def _explain(
    items: list[ScoredItem], evidence: UserEvidence, **overrides: object
) -> list[list[dict[str, str]]]:
    kwargs: dict[str, object] = {
        "trending": {},
        "partner": lambda item, among: None,
        "now": 1000.0,
        "new_within_s": 100.0,
        "favourite": None,
    }
    return explain(items, evidence, **{**kwargs, **overrides})  # type: ignore[arg-type]


def test_each_item_names_the_liked_item_nearest_to_it() -> None:
    items = [_item("a", [0.9, 0.1]), _item("b", [0.2, 0.8])]
    assert nearest_liked(items, _evidence().liked) == ["h1", "h2"]
    assert _explain(items, _evidence()) == [
        [{"kind": "similar_to", "item_id": "h1"}],
        [{"kind": "similar_to", "item_id": "h2"}],
    ]


def test_an_item_without_a_vector_or_a_user_without_likes_gets_no_similar_reason() -> None:
    bare = ScoredItem("a", 0.5)
    assert nearest_liked([bare], _evidence().liked) == [None]
    assert nearest_liked([_item("a", [1.0, 0.0])], []) == [None]


def test_co_visited_items_name_the_recent_item_they_are_consumed_with() -> None:
    covisitation = CoVisitation(neighbours=4)
    covisitation.add("a", ["h2"])
    covisitation.add("a", ["h2"])
    covisitation.add("a", ["h1"])
    evidence = _evidence(liked=[], covisited={"a": 0.7})
    reasons = _explain([_item("a", [1.0, 0.0])], evidence, partner=covisitation.strongest_partner)
    assert reasons == [[{"kind": "also_consumed_with", "item_id": "h2"}]]
    assert covisitation.strongest_partner("a", ["unknown"]) is None


def test_trending_new_and_category_reasons_follow_the_signals() -> None:
    items = [
        _item("t", [1.0, 0.0], "horror", created_at=0.0),
        _item("n", [1.0, 0.0], "comedy", created_at=950.0),
    ]
    evidence = _evidence(liked=[])
    reasons = _explain(items, evidence, trending={"t": 1.0}, favourite="horror")
    assert reasons == [
        [{"kind": "trending"}, {"kind": "category_match", "category": "horror"}],
        [{"kind": "new"}],
    ]
    asked = _explain(items, _evidence(liked=[], categories=("comedy",)), favourite="horror")
    assert asked[1] == [{"kind": "new"}, {"kind": "category_match", "category": "comedy"}]


def test_the_favourite_category_is_the_most_liked_and_ties_go_to_the_latest() -> None:
    assert favourite_category(["a", "b", "b", None]) == "b"
    assert favourite_category(["a", "b"]) == "b"
    assert favourite_category([None]) is None
