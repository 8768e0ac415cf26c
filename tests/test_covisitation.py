import math

import numpy as np
import pytest

from worker.covisitation import CoVisitation, top_unseen
from worker.events import UserEvent
from worker.ranking import RankingParams, blend
from worker.recommend import covisit_pairs
from worker.settings import load_settings
from worker.store import Interaction, ScoredItem, UserState
from worker.user_state import fresh_events


def test_a_consumption_pairs_with_each_earlier_item_both_ways_once() -> None:
    covis = CoVisitation(neighbours=10)
    covis.add("a", [])
    covis.add("b", ["a", "a"])  # a repeated earlier item still makes one pair
    assert covis.count("a") == covis.count("b") == 1.0
    assert covis.pair("a", "b") == covis.pair("b", "a") == 1.0
    assert covis.pair("b", "b") == 0.0


def test_scores_are_co_counts_over_the_shrunk_geometric_mean_of_counts() -> None:
    covis = CoVisitation(neighbours=10, shrink=5.0)
    for earlier in ([], ["a"], ["a", "b"]):  # user 1: a, b, c
        covis.add("abc"[len(earlier)], earlier)
    covis.add("a", [])  # user 2: a, c
    covis.add("c", ["a"])
    scores = covis.scores(["a"])
    assert scores["b"] == pytest.approx(1 / (math.sqrt(2 * 1) + 5))
    assert scores["c"] == pytest.approx(2 / (math.sqrt(2 * 2) + 5))
    both = covis.scores(["a", "b"])
    assert both["c"] == pytest.approx(scores["c"] + 1 / (math.sqrt(1 * 2) + 5))


def test_a_full_row_replaces_its_weakest_partner() -> None:
    covis = CoVisitation(neighbours=2)  # 4 partner slots per item
    for _ in range(3):
        covis.add("hit", ["x"])
    covis.add("hit", ["y"])
    covis.add("hit", ["y"])
    for rare in ("r1", "r2", "r3"):
        covis.add("hit", [rare])
    assert covis.pair("hit", "x") == 3.0
    assert covis.pair("hit", "y") == 2.0
    assert sorted(covis.pair("hit", r) for r in ("r1", "r2", "r3")) == [0.0, 1.0, 1.0]
    assert covis.pair("r3", "hit") == 1.0  # the other direction has room


def _pairs(covis: CoVisitation, items: str) -> dict[tuple[str, str], float]:
    return {(a, b): covis.pair(a, b) for a in items for b in items if covis.pair(a, b)}


def test_a_batch_counts_what_its_consumptions_count_one_at_a_time() -> None:
    consumptions = [("b", ["a"]), ("c", ["a", "b"]), ("b", ["a"]), ("a", ["c"])]
    batched, alone = CoVisitation(neighbours=10), CoVisitation(neighbours=10)
    batched.add_many(consumptions)
    for item, earlier in consumptions:
        alone.add(item, earlier)
    assert _pairs(batched, "abc") == _pairs(alone, "abc")
    assert batched.pair("a", "b") == batched.pair("b", "a") == 2.0
    assert [batched.count(i) for i in "abc"] == [1.0, 2.0, 1.0]


def test_a_full_row_gives_its_weakest_slots_to_a_batchs_most_frequent_newcomers() -> None:
    covis = CoVisitation(neighbours=2)  # 4 partner slots per item
    covis.add_many([("hit", [o]) for o in ("w", "x", "y", "z")])
    covis.add_many([("hit", [o]) for o in ("w", "x", "y", "new", "new", "rare")])
    # w, x and y were counted in this batch and keep their slots: z's, the one left, goes to
    # the newcomer seen twice; the one seen once finds no room.
    assert [covis.pair("hit", o) for o in ("w", "x", "y", "new")] == [2.0, 2.0, 2.0, 2.0]
    assert covis.pair("hit", "z") == covis.pair("hit", "rare") == 0.0
    assert covis.pair("rare", "hit") == 1.0  # the other direction has room


def test_a_batch_beyond_capacity_forgets_before_the_consumption_that_overflows() -> None:
    covis = CoVisitation(neighbours=10, capacity=4)
    covis.add_many([("a", []), ("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["a"])])
    assert len(covis) == 2
    assert covis.count("a") == 2.0 and covis.count("b") == 0.0
    assert covis.pair("a", "d") == covis.pair("d", "a") == 1.0


def test_beyond_capacity_the_least_consumed_items_are_forgotten() -> None:
    covis = CoVisitation(neighbours=10, capacity=4)
    covis.add("a", [])
    covis.add("a", [])
    covis.add("b", ["a"])
    covis.add("c", ["a"])
    covis.add("d", ["a"])  # a fifth item: only the most consumed one stays beside it
    assert len(covis) == 2
    assert covis.count("a") == 2.0 and covis.count("b") == 0.0
    assert covis.pair("a", "b") == 0.0 and covis.pair("a", "d") == 1.0
    assert set(covis.scores(["a"])) == {"d"}


def test_top_unseen_skips_seen_and_unscored_items_in_the_order_given() -> None:
    scores = {"a": 0.9, "c": 0.7, "b": 0.5, "z": 0.0}
    assert top_unseen(scores, ["a"], 5) == ["c", "b"]
    assert top_unseen(scores, [], 1) == ["a"]
    assert top_unseen(scores, [], 0) == []


def test_scores_come_best_first_ties_in_the_order_items_were_first_tracked() -> None:
    covis = CoVisitation(neighbours=4)
    covis.add("x", ["q", "p"])  # q tracked before p: equal scores with x
    for _ in range(4):
        covis.add("y", ["x"])
    covis.add("r", ["x"])
    scores = covis.scores(["x"])
    assert list(scores) == ["y", "q", "p", "r"]
    assert scores["y"] > scores["q"] == scores["p"] > scores["r"]


def _event(event_id: str, item: str, ts: float, kind: str = "click") -> UserEvent:
    return UserEvent(event_id, "u", item, kind, None, ts)


def test_new_consumptions_pair_with_earlier_ones_but_not_skips_or_redeliveries() -> None:
    covis = CoVisitation(neighbours=10)
    before = UserState("u", history=[Interaction("a", "click", 1.0, 1.0, event_id="e1")])
    events = [
        _event("e3", "c", 3.0),
        _event("e1", "a", 1.0),  # already in the state: a redelivery
        _event("e2", "b", 2.0, "skip"),
    ]
    for item, earlier in covisit_pairs(before, fresh_events(before, events), history=20):
        covis.add(item, earlier)
    assert covis.count("a") == 0.0 and covis.count("b") == 0.0
    assert covis.count("c") == 1.0
    assert covis.pair("c", "a") == 1.0 and covis.pair("c", "b") == 0.0


def test_co_visitation_lifts_an_item_the_users_audience_shares() -> None:
    params = RankingParams.from_settings(
        load_settings(
            popularity_weight=0.0,
            freshness_boost=0.0,
            negative_feedback_weight=0.0,
            covisitation_weight=1.5,
            candidate_pool=3,
        )
    )
    candidates = [ScoredItem("near", 0.9), ScoredItem("mid", 0.8), ScoredItem("shared", 0.7)]
    plain = blend(candidates, {}, history_length=5, now=0.0, params=params)
    lifted = blend(
        candidates, {}, history_length=5, now=0.0, params=params, covisited={"shared": 0.4}
    )
    assert np.argmax(plain) == 0
    assert np.argmax(lifted) == 2
    assert lifted[2] - plain[2] == pytest.approx(1.5)  # the best co-visited gets the weight


def test_scoring_a_batch_matches_scoring_each_user_alone() -> None:
    covis = CoVisitation(neighbours=3)
    sequences = [list("abcde"), list("bcdf"), list("aef"), list("cab")]
    for sequence in sequences:
        for n, item in enumerate(sequence):
            covis.add(item, sequence[:n])
    histories = [["a"], ["b", "c"], [], ["zz"], ["f", "e", "d"]]
    assert covis.scores_many(histories, limit=3) == [covis.scores(h, limit=3) for h in histories]
    assert all(len(s) <= 3 for s in covis.scores_many(histories, limit=3))
