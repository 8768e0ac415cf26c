import numpy as np
import pytest

from worker.ranking import (
    RankingParams,
    blend,
    blend_many,
    boosted,
    freshness,
    mmr,
    negative_penalty,
    popularity_weight,
    relevance,
    shortlist,
    shortlist_many,
    unit_rows,
)
from worker.rules import ItemRules
from worker.settings import load_settings
from worker.store import Scored, ScoredItem

PARAMS = RankingParams(
    k=3,
    popularity_weight=0.4,
    popularity_history=5.0,
    freshness_boost=0.1,
    freshness_half_life_s=100.0,
    mmr_lambda=1.0,
    negative_feedback_weight=2.0,
    covisitation_weight=0.0,
    relevance_span=3,
)


def rank(
    items: list[ScoredItem],
    trending: dict[str, float],
    *,
    history_length: int,
    now: float,
    params: RankingParams,
    negatives: np.ndarray | None = None,
) -> list[ScoredItem]:
    """One user through the worker's two steps: shortlist, then the batch MMR."""
    best = shortlist(
        items,
        trending,
        history_length=history_length,
        now=now,
        params=params,
        negatives=negatives,
    )
    return mmr([best], params.k, params.mmr_lambda)[0]


def mmr_one(items: list[ScoredItem], k: int, lambda_: float) -> list[ScoredItem]:
    return mmr([Scored.of(items)], k, lambda_)[0]


def vec(*components: float) -> np.ndarray:
    v = np.zeros(4, dtype=np.float32)
    v[: len(components)] = components
    return v / np.linalg.norm(v)


def test_params_come_from_settings() -> None:
    params = RankingParams.from_settings(load_settings(recommendations_k=7, mmr_lambda=0.5))
    assert (params.k, params.mmr_lambda) == (7, 0.5)


def test_items_like_a_disliked_one_are_penalised_by_their_closest_cosine() -> None:
    candidates = [
        ScoredItem("twin", 0.9, vector=vec(0, 1)),
        ScoredItem("other", 0.8, vector=vec(1)),
        ScoredItem("opposite", 0.7, vector=vec(0, -1)),
    ]
    disliked = np.stack([vec(0, 1), vec(0, 0, 1)])
    penalty = negative_penalty(unit_rows(candidates), disliked)
    assert penalty == pytest.approx([1.0, 0.0, 0.0])
    ranked = rank(candidates, {}, history_length=9, now=0.0, params=PARAMS, negatives=disliked)
    assert [i.item_id for i in ranked] == ["other", "opposite", "twin"]
    assert negative_penalty(unit_rows(candidates), np.zeros((0, 4))) == pytest.approx([0, 0, 0])


def test_popularity_counts_fully_for_new_users_and_fades_with_history() -> None:
    assert popularity_weight(0, PARAMS) == pytest.approx(0.4)
    assert popularity_weight(5, PARAMS) == pytest.approx(0.2)
    assert popularity_weight(45, PARAMS) == pytest.approx(0.04)


def test_freshness_halves_every_half_life_and_never_exceeds_one() -> None:
    created = np.array([1000.0, 900.0, 2000.0])  # the last "in the future": clock skew
    assert freshness(created, 1000.0, 100.0) == pytest.approx([1.0, 0.5, 1.0])


def test_relevance_rescales_cosines_between_the_best_and_the_span_th_best() -> None:
    cosines = np.array([0.10, 0.14, 0.12, 0.02])
    assert relevance(cosines, span=3) == pytest.approx([0.0, 1.0, 0.5, -2.0])
    assert relevance(np.array([0.3, 0.1]), span=50) == pytest.approx([1.0, 0.0])
    assert relevance(np.zeros(2), span=3) == pytest.approx([0.0, 0.0])
    assert len(relevance(np.zeros(0), span=3)) == 0


def test_blend_adds_popularity_and_freshness_to_the_relevance() -> None:
    items = [
        ScoredItem("a", 0.5, created_at=0.0),
        ScoredItem("b", 0.5, created_at=1000.0),
        ScoredItem("c", 0.7, created_at=0.0),
    ]
    scores = blend(items, {"a": 1.0}, history_length=0, now=1000.0, params=PARAMS)
    old = 0.1 * 2.0**-10
    assert scores == pytest.approx([0.0 + 0.4 + old, 0.0 + 0.1, 1.0 + old])


def test_a_popular_item_wins_for_a_new_user_but_not_for_an_established_one() -> None:
    items = [ScoredItem("close", 0.8), ScoredItem("popular", 0.75), ScoredItem("far", 0.6)]
    trending = {"popular": 1.0}
    new_user = rank(items, trending, history_length=0, now=0.0, params=PARAMS)
    veteran = rank(items, trending, history_length=200, now=0.0, params=PARAMS)
    assert [i.item_id for i in new_user] == ["popular", "close", "far"]
    assert [i.item_id for i in veteran] == ["close", "popular", "far"]


def test_mmr_with_lambda_one_is_a_sort_cut_to_k() -> None:
    items = [ScoredItem(str(n), s) for n, s in enumerate([0.1, 0.9, 0.5, 0.7])]
    assert [i.item_id for i in mmr_one(items, 3, 1.0)] == ["1", "3", "2"]


def test_mmr_trades_score_for_diversity() -> None:
    items = [
        ScoredItem("a1", 0.90, vector=vec(1)),
        ScoredItem("a2", 0.89, vector=vec(1, 0.05)),
        ScoredItem("b", 0.80, vector=vec(0, 1)),
    ]
    assert [i.item_id for i in mmr_one(items, 2, 1.0)] == ["a1", "a2"]
    assert [i.item_id for i in mmr_one(items, 2, 0.7)] == ["a1", "b"]
    # Scores are kept as computed; only the order changes.
    assert [i.score for i in mmr_one(items, 3, 0.7)] == [0.90, 0.80, 0.89]


def test_mmr_treats_items_without_vectors_as_unlike_everything() -> None:
    items = [ScoredItem("a", 0.9, vector=vec(1)), ScoredItem("b", 0.8), ScoredItem("c", 0.85)]
    assert [i.item_id for i in mmr_one(items, 3, 0.5)] == ["a", "c", "b"]
    assert mmr_one([], 3, 0.5) == []


def test_mmr_ranks_a_batch_of_users_each_as_if_alone() -> None:
    first = [
        ScoredItem("a1", 0.90, vector=vec(1)),
        ScoredItem("a2", 0.89, vector=vec(1, 0.05)),
        ScoredItem("b", 0.80, vector=vec(0, 1)),
    ]
    second = [ScoredItem("x", 0.2, vector=vec(0, 0, 1)), ScoredItem("y", 0.5)]
    together = mmr([Scored.of(first), Scored([], []), Scored.of(second)], 2, 0.7)
    assert together == [mmr_one(first, 2, 0.7), [], mmr_one(second, 2, 0.7)]
    assert [i.item_id for i in together[2]] == ["y", "x"]


def _greedy_mmr(items: list[ScoredItem], k: int, lambda_: float) -> list[str]:
    """MMR as the definition reads, one pick at a time in plain Python."""

    def cosine(a: ScoredItem, b: ScoredItem) -> float:
        if a.vector is None or b.vector is None:
            return 0.0
        norms = max(float(np.linalg.norm(a.vector)), 1e-6) * max(
            float(np.linalg.norm(b.vector)), 1e-6
        )
        return float(a.vector @ b.vector) / norms

    left, picked = sorted(items, key=lambda s: s.score, reverse=True), []
    while left and len(picked) < k:
        gains = [
            lambda_ * c.score - (1 - lambda_) * max((cosine(c, p) for p in picked), default=0)
            for c in left
        ]
        picked.append(left.pop(gains.index(max(gains))))
    return [item.item_id for item in picked]


def test_mmr_of_a_batch_matches_the_greedy_definition() -> None:
    rng = np.random.default_rng(3)
    users = [
        [
            ScoredItem(
                f"{u}-{n}",
                float(rng.random()),
                vector=None if rng.random() < 0.2 else rng.standard_normal(8).astype(np.float32),
            )
            for n in range(int(rng.integers(0, 12)))
        ]
        for u in range(6)
    ]
    for lambda_ in (0.3, 0.7):
        ranked = mmr([Scored.of(items) for items in users], 5, lambda_)
        assert [[i.item_id for i in r] for r in ranked] == [
            _greedy_mmr(items, 5, lambda_) for items in users
        ]


def _reference_scores(
    items: list[ScoredItem],
    trending: dict[str, float],
    history_length: int,
    now: float,
    params: RankingParams,
    negatives: np.ndarray | None,
    covisited: dict[str, float] | None,
) -> np.ndarray:
    """The module docstring's formula for one user, composed from the primitives."""
    if not items:
        return np.zeros(0)
    scores = relevance(np.array([i.score for i in items]), params.relevance_span)
    popularity = np.array([trending.get(i.item_id, 0.0) for i in items])
    scores += popularity_weight(history_length, params) * popularity
    created = np.array([i.created_at for i in items])
    scores += params.freshness_boost * freshness(created, now, params.freshness_half_life_s)
    if negatives is not None and len(negatives):
        scores -= params.negative_feedback_weight * negative_penalty(unit_rows(items), negatives)
    together = np.array([(covisited or {}).get(i.item_id, 0.0) for i in items])
    if together.max() > 0:
        scores += params.covisitation_weight * together / together.max()
    return boosted(scores, np.array([i.rules.boost for i in items]))


def test_a_batch_is_scored_and_shortlisted_as_if_each_user_were_alone() -> None:
    rng = np.random.default_rng(7)
    params = RankingParams(3, 0.4, 5.0, 0.1, 100.0, 1.0, 2.0, 1.5, relevance_span=4)
    # Users share candidates (each item's fields are read once a batch): boosts, ages and
    # popularity differ by item.
    catalogue = [
        ScoredItem(
            f"i{n}", 0.0, created_at=float(rng.integers(0, 1000)), vector=vec(*v),
            rules=ItemRules(boost=(1.0, 1.5, 0.5)[n % 3]),
        )
        for n, v in enumerate(rng.normal(size=(30, 4)))
    ]  # fmt: skip
    trending = {f"i{n}": float(rng.random()) for n in range(0, 30, 3)}
    users: list[list[ScoredItem]] = []
    for size in (12, 0, 1, 7, 7):  # an empty and a one-candidate user among them
        picks = rng.choice(30, size=size, replace=False)
        # Rounded cosines: ties must break by candidate order, as a stable sort would.
        users.append([catalogue[p].with_score(round(float(rng.random()), 1)) for p in picks])
    negatives = [None, None, np.stack([vec(1, 0, 0, 0)]), None, np.stack([vec(0, 1, 0, 0)])]
    covisited = [{"i3": 2.0, "i4": 1.0}, None, {}, {"i9": 0.5}, None]
    histories = [0, 3, 10, 1, 40]

    signals = {"history_lengths": histories, "negatives": negatives, "covisited": covisited}
    scored = [Scored.of(items) for items in users]
    scores, owner = blend_many(scored, trending, now=1000.0, params=params, **signals)  # type: ignore[arg-type]
    batch = shortlist_many(scored, trending, now=1000.0, params=params, **signals)  # type: ignore[arg-type]
    for row, items in enumerate(users):
        alone = _reference_scores(
            items, trending, histories[row], 1000.0, params, negatives[row], covisited[row]
        )
        np.testing.assert_allclose(scores[owner == row], alone)
        best = np.argsort(-alone, kind="stable")[: 3 * params.k]
        listed = zip([i.item_id for i in batch[row].items], batch[row].scores, strict=True)
        assert list(listed) == [(items[b].item_id, pytest.approx(alone[b])) for b in best]
