import numpy as np

from worker.answer import negatives_of, shortlists_for_users
from worker.candidates import CandidateFilter
from worker.events import UserEvent
from worker.ranking import RankingParams
from worker.recommend import event_rounds
from worker.store import Interaction, Scored, ScoredItem, UserState


def _ev(event_id: str, user: str) -> UserEvent:
    return UserEvent(event_id, user, "i", "click", None, 0.0)


def test_coalescing_gives_each_user_one_answer_for_all_their_events() -> None:
    rounds = event_rounds([_ev("1", "a"), _ev("2", "b"), _ev("3", "a")], coalesce=True)
    assert len(rounds) == 1
    assert [e.event_id for e in rounds[0]["a"]] == ["1", "3"]


def test_without_coalescing_each_event_gets_its_own_round_in_order() -> None:
    rounds = event_rounds([_ev("1", "a"), _ev("2", "b"), _ev("3", "a")], coalesce=False)
    assert [{u: [e.event_id for e in evs] for u, evs in r.items()} for r in rounds] == [
        {"a": ["1"], "b": ["2"]},
        {"a": ["3"]},
    ]


def test_no_events_no_rounds() -> None:
    assert event_rounds([], coalesce=True) == []


def _unit(*components: float) -> np.ndarray:
    v = np.zeros(3, dtype=np.float32)
    v[: len(components)] = components
    return v / np.linalg.norm(v)


def test_negatives_are_the_disliked_items_in_the_catalogue() -> None:
    state = UserState(
        "u",
        history=[
            Interaction("liked", "like", 2.0, 1.0),
            Interaction("hated", "dislike", -2.0, 2.0),
            Interaction("unknown", "dislike", -2.0, 3.0),  # not in the catalogue: ignored
        ],
    )
    vectors = {"liked": _unit(1), "hated": _unit(0, 1)}
    np.testing.assert_array_equal(negatives_of(state, vectors), [_unit(0, 1)])
    assert negatives_of(UserState("u"), vectors).shape == (0, 0)


def test_a_shortlist_never_lists_seen_items_and_adds_trending_candidates() -> None:
    state = UserState("u", history=[Interaction("a", "click", 1.0, 1.0)], seen=["a"])
    found = [ScoredItem("b", 0.5, vector=_unit(1, 1))]  # the store leaves the seen "a" out
    extra = [ScoredItem("hot", 0.0, vector=_unit(0, 0, 1)), ScoredItem("a", 0.0, vector=_unit(1))]
    params = RankingParams(3, 2.0, 5.0, 0.0, 1.0, 1.0, 0.5, 0.0, relevance_span=10)
    [items] = shortlists_for_users(
        [Scored.of(found)],
        [Scored.of(extra)],
        [state],
        {"hot": 1.0, "a": 1.0},
        [CandidateFilter()],
        0.0,
        params,
    )
    assert [i.item_id for i in items.items] == ["hot", "b"]
