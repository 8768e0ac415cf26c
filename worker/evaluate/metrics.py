"""Prequential ranking metrics: one held-out event at a time, against the list the user was
shown just before it (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class MethodMetrics:
    """Recall@k (hit rate: one relevant item per event), NDCG@k, MRR@k (reciprocal rank,
    0 beyond k), catalogue coverage (share of the catalogue ever shown), and hits on items
    that first appeared after the warm-up."""

    k: int
    n_events: int = 0
    hits: int = 0
    dcg: float = 0.0
    reciprocal_rank: float = 0.0
    new_item_hits: int = 0
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

    def summary(self, catalogue_size: int) -> dict[str, float | int]:
        n = max(self.n_events, 1)
        return {
            f"recall@{self.k}": round(self.hits / n, 5),
            f"ndcg@{self.k}": round(self.dcg / n, 5),
            "mrr": round(self.reciprocal_rank / n, 5),
            "coverage": round(len(self.shown) / max(catalogue_size, 1), 5),
            "new_item_hits": self.new_item_hits,
            "n_events": self.n_events,
        }
