"""Prequential ranking metrics: one held-out event at a time, against the list the user was
shown just before it, and a sampled AUC against the method's scores (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

# Negatives drawn per scored event (replay) or per user (content evaluation) for the AUC.
AUC_NEGATIVES = 100


def sampled_auc(targets: ArrayLike, negatives: ArrayLike) -> float:
    """The share of (target, negative) pairs in which the target scores higher; a tie
    counts half. 1: every target above every negative; 0: below; 0.5: all tied (or a
    random order). NaN when either side is empty."""
    target = np.asarray(targets, dtype=np.float64).reshape(-1, 1)
    negative = np.asarray(negatives, dtype=np.float64).reshape(1, -1)
    if not target.size or not negative.size:
        return math.nan
    # -inf (an item a method cannot rank) ties with -inf: equality is checked, not a
    # difference, which would be nan.
    wins = (target > negative).sum() + 0.5 * (target == negative).sum()
    return float(wins / (target.size * negative.size))


def sample_negatives(pool: np.ndarray, n: int, seed: int | Sequence[int]) -> np.ndarray:
    """`n` distinct entries of `pool` (all of it when smaller), drawn with `seed`: the
    same seed gives the same draw whatever else ran before (a per-event seed keeps every
    method's negatives identical and the run reproducible)."""
    if len(pool) <= n:
        return np.asarray(pool)
    return np.random.default_rng(seed).choice(pool, size=n, replace=False)


@dataclass
class MethodMetrics:
    """Per scored event there is one relevant item (the rated movie), so:

    recall@k     hits / events (the hit rate)
    precision@k  hits / (k * events): the share of the k slots that held the next item,
                 k fixed even when a list is shorter
    F1@k         2 * precision * recall / (precision + recall) = 2 * hits / ((k + 1) *
                 events): the same as the mean of each event's own F1 (2 / (k + 1) on a
                 hit, 0 otherwise)
    NDCG@k, MRR@k (reciprocal rank, 0 beyond k), catalogue coverage (share of the
    catalogue ever shown), hits on items that first appeared after the warm-up, and the
    mean sampled AUC (see `sampled_auc`; events with none are left out of it)."""

    k: int
    n_events: int = 0
    hits: int = 0
    dcg: float = 0.0
    reciprocal_rank: float = 0.0
    new_item_hits: int = 0
    auc_sum: float = 0.0
    auc_events: int = 0
    shown: set[str] = field(default_factory=set)
    # Running NDCG after each scored event, for the plot: (event number, mean NDCG so far).
    curve: list[tuple[int, float]] = field(default_factory=list)

    def record(self, shown: Sequence[str], target: str, *, new_item: bool) -> None:
        listed = list(shown[: self.k])
        self.n_events += 1
        self.shown.update(listed)
        if target in listed:
            rank = listed.index(target)  # 0-based
            self.hits += 1
            self.dcg += 1.0 / math.log2(rank + 2)
            self.reciprocal_rank += 1.0 / (rank + 1)
            self.new_item_hits += new_item
        if self.n_events % 500 == 0:
            self.curve.append((self.n_events, self.dcg / self.n_events))

    def record_auc(self, target_score: float, negative_scores: ArrayLike) -> None:
        """One event's target against its sampled negatives, as the method scores them."""
        auc = sampled_auc(target_score, negative_scores)
        if not math.isnan(auc):
            self.auc_sum += auc
            self.auc_events += 1

    def summary(self, catalogue_size: int) -> dict[str, float | int | None]:
        n = max(self.n_events, 1)
        recall, precision = self.hits / n, self.hits / (self.k * n)
        f1 = 2 * precision * recall / (precision + recall) if self.hits else 0.0
        return {
            f"recall@{self.k}": round(recall, 5),
            f"precision@{self.k}": round(precision, 5),
            f"f1@{self.k}": round(f1, 5),
            f"ndcg@{self.k}": round(self.dcg / n, 5),
            "mrr": round(self.reciprocal_rank / n, 5),
            "auc": round(self.auc_sum / self.auc_events, 5) if self.auc_events else None,
            "coverage": round(len(self.shown) / max(catalogue_size, 1), 5),
            "new_item_hits": self.new_item_hits,
            "n_events": self.n_events,
        }
