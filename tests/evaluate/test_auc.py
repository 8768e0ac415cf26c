"""What the replay's sampled AUC ranks: negatives the user never rates, the worker's own
blended scores, and baseline scores that agree with the baselines' lists."""

from __future__ import annotations

import math

import numpy as np

from worker.evaluate.auc import NegativeSampler, WorkerScorer
from worker.evaluate.baselines import Interactions, ItemKNN, baselines, top_k
from worker.movielens import Rating
from worker.settings import Settings, load_settings
from worker.signals import Signals
from worker.store import Interaction, ItemRecord, UserState

IDS = ["a", "b", "c", "d"]
VECTORS = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
ROWS = {item_id: row for row, item_id in enumerate(IDS)}


def scorer(settings: Settings) -> WorkerScorer:
    scorer = WorkerScorer(IDS, VECTORS, settings)
    scorer.index([ItemRecord(i, VECTORS[ROWS[i]], created_at=0.0) for i in IDS])
    return scorer


def user_with_a(vector: np.ndarray | None) -> UserState:
    history = [Interaction("a", "rating", 1.0, 10.0)]
    return UserState(user_id="u", history=history, seen=["a"], vector=vector)


def rows(*ids: str) -> np.ndarray:
    return np.array([ROWS[i] for i in ids])


def test_negatives_are_catalogue_items_the_user_rates_at_no_time() -> None:
    ratings = [Rating("u", "a", 4, 1.0), Rating("v", "b", 4, 2.0), Rating("u", "c", 4, 3.0)]
    sampler = NegativeSampler(ratings, ROWS, n=10)
    in_catalogue = np.array([True, True, True, False])  # "d" is not indexed yet
    assert sorted(sampler.sample(7, "u", in_catalogue).tolist()) == [ROWS["b"]]
    assert sorted(sampler.sample(7, "new user", in_catalogue).tolist()) == [0, 1, 2]


def test_the_same_event_draws_the_same_negatives() -> None:
    sampler = NegativeSampler([], {str(i): i for i in range(500)}, n=100, seed=3)
    everything = np.ones(500, dtype=bool)
    first = sampler.sample(12, "u", everything)
    np.testing.assert_array_equal(first, sampler.sample(12, "u", everything))
    assert not np.array_equal(first, sampler.sample(13, "u", everything))


def test_the_worker_ranks_items_nearest_the_user_vector_first_and_seen_ones_last() -> None:
    settings = load_settings(candidate_pool=2, freshness_boost=0.0)
    signals = Signals.from_settings(settings)
    scores = scorer(settings).scores(
        user_with_a(VECTORS[0]), rows("b", "c", "d", "a"), signals, 0.0
    )
    assert scores[0] > scores[1] > scores[2]
    assert scores[3] == -math.inf  # seen: the worker never lists it


def test_an_items_worker_score_does_not_depend_on_what_is_scored_with_it() -> None:
    # Relevance is rescaled within the candidate set: the scorer rebuilds the whole set, so
    # asking about "d" alone gives the same score as asking about it among others.
    settings = load_settings(candidate_pool=2)
    signals = Signals.from_settings(settings)
    signals.trending.add("c", 5.0)
    signals.covisitation.add("b", ["a"])
    worker = scorer(settings)
    state = user_with_a(VECTORS[0])
    together = worker.scores(state, rows("b", "c", "d"), signals, 10.0)
    for n, item_id in enumerate(("b", "c", "d")):
        alone = worker.scores(state, rows(item_id), signals, 10.0)
        assert alone[0] == together[n]


def test_a_user_without_a_vector_is_scored_by_popularity_like_the_workers_trending_list() -> None:
    settings = load_settings(freshness_boost=0.0, covisitation_weight=0.0)
    signals = Signals.from_settings(settings)
    signals.trending.add("c", 5.0)
    scores = scorer(settings).scores(user_with_a(None), rows("b", "c", "d"), signals, 10.0)
    assert scores[1] > scores[0] == scores[2]


def test_every_baselines_scores_put_its_own_list_on_top() -> None:
    data = Interactions(len(IDS), trending_half_life_s=100.0)
    data.indexed[:] = True
    methods = baselines(VECTORS, window=5, half_life_s=100.0)
    knn = next(m for m in methods if isinstance(m, ItemKNN))
    for user, item, ts in [("v", 1, 1.0), ("v", 2, 2.0), ("w", 2, 3.0), ("u", 0, 4.0)]:
        knn.add(data, user, item)
        data.add(user, item, 1.0, ts)
    everything = np.arange(len(IDS))
    for method in methods:
        for user in ("u", "v", "nobody"):
            scores = method.score(data, user, everything)
            expected = top_k(scores, data.allowed(user), 2)
            assert method.recommend(data, user, 2) == expected, (method.name, user)
