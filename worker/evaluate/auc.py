"""The replay's sampled AUC: per scored event, the rated movie against `AUC_NEGATIVES`
catalogue movies the user never rates, ranked by each method's own scores.

Negatives are drawn per event with the seed (seed, event number), so every method gets the
same ones and a rerun the same draw. They come from the movies in the catalogue at that
point that the user rates at no time in the data set (so none is a movie they go on to
rate); the target is in the catalogue too (a movie's first rating is not scored).

Every method scores the target and its negatives as its state stands when the event's
micro-batch starts (every earlier batch seen, nothing of this one): the same moment for
all, with nothing of the event itself leaking in. No method is reduced to its top-k list
(which would tie nearly every item below it and make the AUC a copy of recall): each has
real scores for any item, cheaply:

  worker              `WorkerScorer`: the worker's own blend (worker.ranking)
  most_popular        rating counts
  decayed_popular     time-decayed counts
  item_knn            summed shrunk co-occurrence cosine to the user's history
  content_similarity  cosine to the user's recency-weighted profile
  (a user with no history: the decayed popularity, as their lists fall back to it)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from worker.candidates import CandidateFilter, candidate_filter, merge_candidates
from worker.covisitation import top_unseen
from worker.evaluate.baselines import top_k
from worker.evaluate.metrics import AUC_NEGATIVES, sample_negatives
from worker.movielens import Rating
from worker.ranking import RankingParams, blend_many
from worker.settings import Settings
from worker.signals import Signals
from worker.store import ItemRecord, Scored, ScoredItem, UserState
from worker.trending import counts_as_consumption


class NegativeSampler:
    """Per event, `n` movies from the catalogue that the user rates at no time."""

    def __init__(
        self,
        ratings: Sequence[Rating],
        row_of: Mapping[str, int],
        *,
        n: int = AUC_NEGATIVES,
        seed: int = 0,
    ) -> None:
        self.n, self.seed, self.n_items = n, seed, len(row_of)
        self.rated: dict[str, np.ndarray] = {}
        for rating in ratings:
            mask = self.rated.setdefault(rating.user_id, np.zeros(self.n_items, dtype=bool))
            mask[row_of[rating.item_id]] = True

    def sample(self, number: int, user: str, indexed: np.ndarray) -> np.ndarray:
        """Rows of the negatives of event `number` (`indexed`: the catalogue now)."""
        rated = self.rated.get(user)
        pool = np.flatnonzero(indexed if rated is None else indexed & ~rated)
        return sample_negatives(pool, self.n, (self.seed, number))


class WorkerScorer:
    """The worker's scores for chosen items, from a user's stored state and the signals.

    The worker scores a candidate set (the `candidate_pool` unseen items nearest the user
    vector, the trending items, the user's best co-visited items) with
    `ranking.blend_many`, then lets MMR order its best 3k for diversity. Blend's relevance
    and co-visitation terms are rescaled within the candidate set (best = 1), so the chosen
    items are scored inside it: the set is rebuilt (the search by brute force over the
    catalogue instead of HNSW) and they join it as extra candidates. None of them can move
    the rescaling anchors: the set already holds the nearest and the best co-visited unseen
    items. MMR is left out: it is no score, and only reorders the top of the list.
    An item the worker could never list (seen, or ruled out by constraints) scores -inf.
    The parameters are the settings', or a variant's (`scores(params=...)`).
    """

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, settings: Settings) -> None:
        self.item_ids = list(item_ids)
        self.row_of = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self.vectors = vectors
        self.items: list[ScoredItem | None] = [None] * len(self.item_ids)
        self.indexed = np.zeros(len(self.item_ids), dtype=bool)
        self.settings = settings
        self.params = RankingParams.from_settings(settings)

    def index(self, records: Sequence[ItemRecord]) -> None:
        """Items as the store returns them (payload and vector), once upserted."""
        for r in records:
            row = self.row_of[r.item_id]
            self.items[row] = ScoredItem(
                r.item_id, 0.0, r.category, tuple(r.tags), r.created_at, vector=r.vector
            )
            self.indexed[row] = True

    def scores(
        self,
        state: UserState,
        rows: np.ndarray,
        signals: Signals,
        now: float,
        params: RankingParams | None = None,
    ) -> np.ndarray:
        """The blended score of each of `rows` for this user, at event time `now` (with
        `params`: an A/B variant's ranking parameters instead of the settings')."""
        settings = self.settings
        constraints = candidate_filter(settings, (), now)
        cosines, found = self._search(state, constraints)
        popular = signals.trending.top(settings.trending_size)
        covisited: dict[str, float] = {}
        if settings.covisitation_weight > 0:
            # The user's last consumed items (skips and dislikes are not consumption).
            consumed = [i.item_id for i in state.history if counts_as_consumption(i.type)]
            covisited = signals.covisitation.scores(consumed[-settings.covisitation_history :])
        extra_ids = [
            *popular,
            *top_unseen(covisited, state.seen, settings.covisitation_candidates),
            *(self.item_ids[row] for row in rows),
        ]
        extra = Scored([], [])
        for row in (self.row_of[i] for i in extra_ids if i in self.row_of):
            if (item := self.items[row]) is not None:
                extra.items.append(item)
                extra.scores.append(float(cosines[row]))
        candidates = merge_candidates(Scored.of(found), extra, state.seen, constraints)
        blended, _ = blend_many(
            [candidates],
            popular,
            history_lengths=[len(state.history)],
            now=now,
            params=params or self.params,
            negatives=[self._disliked(state)],
            covisited=[covisited],
        )
        by_id = dict(zip((c.item_id for c in candidates.items), blended.tolist(), strict=True))
        return np.array([by_id.get(self.item_ids[row], -np.inf) for row in rows])

    def _disliked(self, state: UserState) -> np.ndarray:
        """[m, D] vectors of the catalogue items in the history with a negative weight
        (dislikes, skips, low ratings): the worker's negative-feedback penalty."""
        rows = [
            row
            for i in state.history
            if i.weight < 0 and (row := self.row_of.get(i.item_id)) is not None
            if self.indexed[row]
        ]
        return self.vectors[rows] if rows else np.zeros((0, 0), dtype=np.float32)

    def _search(
        self, state: UserState, constraints: CandidateFilter
    ) -> tuple[np.ndarray, list[ScoredItem]]:
        """Every item's cosine to the user vector (0 without one, like the worker's extra
        candidates) and the store search's hits: the nearest unseen allowed items."""
        if state.vector is None:
            return np.zeros(len(self.item_ids)), []
        query = state.vector / max(float(np.linalg.norm(state.vector)), 1e-12)
        cosines = self.vectors @ query
        allowed = self.indexed.copy()
        allowed[[self.row_of[i] for i in state.seen if i in self.row_of]] = False
        if constraints != CandidateFilter():
            allowed &= [item is not None and constraints.allows(item) for item in self.items]
        hits = top_k(cosines, allowed, self.settings.candidate_pool)
        found = [item.with_score(float(cosines[r])) for r in hits if (item := self.items[r])]
        return cosines, found
