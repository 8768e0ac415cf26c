"""Baselines for the replay, updated event by event (numpy, in memory, no I/O).

Every baseline ranks only the items already in the catalogue and never an item the user
interacted with, like the worker. Those that need a history (item-kNN, content) show a new
user the time-decayed popular items, as the worker does.

Each one's `score` gives the scores its list is the top of, for chosen items only (the
sampled AUC: a target and its negatives, never the whole catalogue a second time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.trending import Trending


def top_k(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    """Indices of the k best scores among the allowed ones, best first (ties: lower index)."""
    masked = np.where(allowed, scores, -np.inf)
    candidates = np.flatnonzero(np.isfinite(masked))
    if len(candidates) > k:
        part = np.argpartition(-masked[candidates], k - 1)[:k]
        candidates = candidates[part]
    order = np.lexsort((candidates, -masked[candidates]))
    return [int(i) for i in candidates[order]]


class Interactions:
    """What every baseline knows: counts, per-user histories, and the live catalogue."""

    def __init__(self, n_items: int, trending_half_life_s: float) -> None:
        self.counts = np.zeros(n_items)
        self.indexed = np.zeros(n_items, dtype=bool)
        self.histories: dict[str, list[tuple[int, float, float]]] = {}  # (item, weight, ts)
        self.trending = Trending(half_life_s=trending_half_life_s, capacity=0)
        self._decayed: np.ndarray | None = None  # decayed_popularity until the next add

    def add(self, user: str, item: int, weight: float, ts: float) -> None:
        self._decayed = None
        self.counts[item] += 1
        self.histories.setdefault(user, []).append((item, weight, ts))
        self.trending.add(str(item), ts)

    def allowed(self, user: str) -> np.ndarray:
        allowed = self.indexed.copy()
        for item, _, _ in self.histories.get(user, ()):
            allowed[item] = False
        return allowed

    def decayed_popularity(self) -> np.ndarray:
        # Cached: the AUC scores a whole micro-batch's events between two adds.
        if self._decayed is None:
            scores = np.zeros(len(self.counts))
            for item, score in self.trending.top(len(self.counts)).items():
                scores[int(item)] = score
            self._decayed = scores
        return self._decayed.copy()


class MostPopular:
    name = "most_popular"

    def recommend(self, data: Interactions, user: str, k: int) -> list[int]:
        return top_k(data.counts, data.allowed(user), k)

    def score(self, data: Interactions, user: str, items: np.ndarray) -> np.ndarray:
        return data.counts[items]


class DecayedPopular:
    name = "decayed_popular"

    def recommend(self, data: Interactions, user: str, k: int) -> list[int]:
        return top_k(data.decayed_popularity(), data.allowed(user), k)

    def score(self, data: Interactions, user: str, items: np.ndarray) -> np.ndarray:
        return data.decayed_popularity()[items]


class ItemKNN:
    """Item-based collaborative filtering on co-interactions: cosine between items' user
    sets (co-counts / sqrt(count_i * count_j), shrunk for rarely seen pairs), summed over
    the user's whole history."""

    name = "item_knn"

    def __init__(self, n_items: int, shrink: float = 5.0) -> None:
        self.co = np.zeros((n_items, n_items), dtype=np.float32)
        self.shrink = shrink

    def add(self, data: Interactions, user: str, item: int) -> None:
        """Call before `data.add` for the same event: pairs with the earlier items."""
        earlier = [i for i, _, _ in data.histories.get(user, ())]
        if earlier:
            np.add.at(self.co[item], earlier, 1.0)
            np.add.at(self.co[:, item], earlier, 1.0)

    def recommend(self, data: Interactions, user: str, k: int) -> list[int]:
        history = [i for i, _, _ in data.histories.get(user, ())]
        if not history:
            return DecayedPopular().recommend(data, user, k)
        return top_k(self._scores(data, history, slice(None)), data.allowed(user), k)

    def score(self, data: Interactions, user: str, items: np.ndarray) -> np.ndarray:
        history = [i for i, _, _ in data.histories.get(user, ())]
        if not history:
            return DecayedPopular().score(data, user, items)
        return self._scores(data, history, items)

    def _scores(
        self, data: Interactions, history: list[int], items: slice | np.ndarray
    ) -> np.ndarray:
        norms = np.sqrt(np.outer(data.counts[history], data.counts[items])) + self.shrink
        return (self.co[history][:, items] / norms).sum(axis=0)


class ContentSimilarity:
    """Content only: the recency-decayed, signed-weighted mean of the user's last items'
    vectors (the fallback user encoder), scored by cosine."""

    name = "content_similarity"

    def __init__(self, vectors: np.ndarray, window: int, half_life_s: float) -> None:
        self.vectors = vectors
        self.window = window
        self.half_life_s = half_life_s

    def recommend(self, data: Interactions, user: str, k: int) -> list[int]:
        profile = self._profile(data, user)
        if profile is None:
            return DecayedPopular().recommend(data, user, k)
        return top_k(self.vectors @ profile, data.allowed(user), k)

    def score(self, data: Interactions, user: str, items: np.ndarray) -> np.ndarray:
        profile = self._profile(data, user)
        if profile is None:
            return DecayedPopular().score(data, user, items)
        return self.vectors[items] @ profile

    def _profile(self, data: Interactions, user: str) -> np.ndarray | None:
        """None without a history, or when its weights cancel out."""
        history = data.histories.get(user, [])[-self.window :]
        if not history:
            return None
        items = [i for i, _, _ in history]
        latest = max(ts for _, _, ts in history)
        weights = np.array([w * 2.0 ** (-(latest - ts) / self.half_life_s) for _, w, ts in history])
        # einsum: a product this small is slower through BLAS's thread pool (see ranking.mmr).
        profile = np.einsum("l,ld->d", weights, self.vectors[items])
        return profile if np.linalg.norm(profile) > 1e-6 else None


def baselines(
    vectors: np.ndarray, *, window: int, half_life_s: float
) -> Sequence[MostPopular | DecayedPopular | ItemKNN | ContentSimilarity]:
    n_items = len(vectors)
    return (
        MostPopular(),
        DecayedPopular(),
        ItemKNN(n_items),
        ContentSimilarity(vectors, window, half_life_s),
    )
