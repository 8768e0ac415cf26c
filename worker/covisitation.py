"""Co-visitation: which items the same users consume together, from the event stream (pure,
in memory).

Each consumption event pairs its item with the user's earlier consumed items (both ways).
A candidate's score for a user sums, over the user's recent items h, the cosine between
the two items' audiences, shrunk for rarely seen pairs:

    co(h, c) / (sqrt(count(h) * count(c)) + shrink)

This is the collaborative signal the content-space user vector cannot see: two films
with similar descriptions may have different audiences. Unlike the trained encoder it
learns from every event as it arrives, and it knows nothing of an item until users consume
it, so the ranking blends the two (see `ranking.blend`).

Storage is numpy, fixed-size and bounded: every tracked item has 2 x `neighbours` partner
slots (a new partner of a full row replaces its weakest one), and beyond `capacity` items
the least consumed quarter is forgotten. Scoring a user is a gather over their items' rows
and one bincount (~0.1 ms), not a walk over Python dicts. Like `Trending`, every worker
holds the same state, fed by every worker through the signals changelog.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

from worker.vector_rows import segment_cells

_INITIAL_ROWS = 1024
# Largest dense [users, items] score matrix built at once (8 bytes a cell).
_DENSE_CELLS = 1 << 20


class CoVisitation:
    def __init__(self, *, neighbours: int, capacity: int = 10_000, shrink: float = 5.0) -> None:
        if neighbours < 1 or capacity < 2:
            raise ValueError("neighbours must be >= 1 and capacity >= 2")
        self.slots = 2 * neighbours
        self.capacity = capacity
        self.shrink = shrink
        self._row_of: dict[str, int] = {}
        self._item_of: list[str] = []
        rows = min(_INITIAL_ROWS, capacity)
        self._counts = np.zeros(rows)
        self._partners = np.full((rows, self.slots), -1, dtype=np.int32)
        self._together = np.zeros((rows, self.slots), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._item_of)

    def count(self, item_id: str) -> float:
        row = self._row_of.get(item_id)
        return 0.0 if row is None else float(self._counts[row])

    def pair(self, a: str, b: str) -> float:
        row, other = self._row_of.get(a), self._row_of.get(b)
        if row is None or other is None:
            return 0.0
        return float(self._together[row][self._partners[row] == other].sum())

    def strongest_partners(self, item_ids: Sequence[str], among: Sequence[str]) -> dict[str, str]:
        """Each item -> the one of `among` it is consumed together with most often (items
        consumed with none of them are left out)."""
        return self.strongest_partners_many([item_ids], [among])[0]

    def strongest_partners_many(
        self, item_ids: Sequence[Sequence[str]], among: Sequence[Sequence[str]]
    ) -> list[dict[str, str]]:
        """`strongest_partners` for every user of a batch: one gather over the items'
        partner slots and one membership test, keyed by (user, partner)."""
        out: list[dict[str, str]] = [{} for _ in item_ids]
        rows = [
            (u, r)
            for u, ids in enumerate(item_ids)
            for i in ids
            if (r := self._row_of.get(i)) is not None
        ]
        wanted = [
            (u, r)
            for u, ids in enumerate(among)
            for a in ids
            if (r := self._row_of.get(a)) is not None
        ]
        if not rows or not wanted:
            return out
        owner, item_rows = (np.array(column, dtype=np.int64) for column in zip(*rows, strict=True))
        slots = self._partners[item_rows].astype(np.int64)  # [items, slots]; -1: empty
        span = len(self._counts) + 1
        keys = np.array([u * span + r for u, r in wanted], dtype=np.int64)
        member = np.isin(owner[:, None] * span + slots, keys) & (slots >= 0)
        together = np.where(member, self._together[item_rows], 0.0)
        best = together.argmax(axis=1)
        strength = together[np.arange(len(item_rows)), best]
        for n in np.flatnonzero(strength > 0).tolist():
            partner = int(slots[n, best[n]])
            out[int(owner[n])][self._item_of[int(item_rows[n])]] = self._item_of[partner]
        return out

    def add(self, item_id: str, earlier: Iterable[str]) -> None:
        """One consumption of `item_id` by a user who consumed `earlier` before it."""
        self.add_many([(item_id, earlier)])

    def add_many(self, consumptions: Iterable[tuple[str, Iterable[str]]]) -> None:
        """A batch's consumptions (item, the user's earlier items), counted together: each
        pair's co-count grows by its number of occurrences in the batch, and a row's new
        partners, most frequent first, replace its weakest partners not counted in this
        batch. Where no row overflows, that is what adding them one at a time counts. One
        set of array operations per batch rather than per consumption: 0.42x the CPU time
        at 34 consumptions a batch (measured, 200 partner slots)."""
        rows: list[int] = []
        partners: list[int] = []
        for item_id, earlier in consumptions:
            others = list(dict.fromkeys(e for e in earlier if e != item_id))[: self.slots]
            if len(self._item_of) + 1 + len(others) > self.capacity:
                self._pair(rows, partners)  # row numbers change below
                rows, partners = [], []
                self._forget_rarest(keep=(self.capacity * 3) // 4 - 1 - len(others))
            row = self._row(item_id)
            self._counts[row] += 1.0
            row_of = self._row_of
            other_rows = [r if (r := row_of.get(o)) is not None else self._row(o) for o in others]
            rows += [row] * len(other_rows) + other_rows  # both ways
            partners += other_rows + [row] * len(other_rows)
        self._pair(rows, partners)

    def scores(self, history: Sequence[str], limit: int = 100) -> dict[str, float]:
        """The `limit` items best co-visited with the history -> summed shrunk cosine (items
        co-visited with none of them are absent). The history's own items may be among
        them: callers exclude what the user has seen."""
        return self.scores_many([history], limit)[0]

    def scores_many(
        self, histories: Sequence[Sequence[str]], limit: int = 100
    ) -> list[dict[str, float]]:
        """`scores` for every user of a batch in one gather and one bincount."""
        out: list[dict[str, float]] = []
        # Chunks keep the dense [users, items] sums to a few MB whatever the capacity.
        step = max(1, _DENSE_CELLS // max(len(self._item_of), 1))
        for first in range(0, len(histories), step):
            out.extend(self._score_chunk(histories[first : first + step], limit))
        return out

    def _score_chunk(
        self, histories: Sequence[Sequence[str]], limit: int
    ) -> list[dict[str, float]]:
        n = len(self._item_of)
        row_of = self._row_of
        per_user = [list({row_of[h] for h in history if h in row_of}) for history in histories]
        lengths = [len(rows) for rows in per_user]
        if not sum(lengths):
            return [{} for _ in histories]
        rows = np.fromiter((r for rows in per_user for r in rows), dtype=np.int64)
        owner = np.repeat(np.arange(len(histories)), lengths)
        partners = self._partners[rows]
        valid = partners >= 0
        ids = partners[valid]
        root = np.sqrt(self._counts)
        norms = np.broadcast_to(root[rows][:, None], partners.shape)[valid] * root[ids]
        weights = self._together[rows][valid] / (norms + self.shrink)
        cells = np.broadcast_to(owner[:, None], partners.shape)[valid] * n + ids
        # Dense over the tracked items (bounded by capacity): cheaper than sorting ids.
        sums = np.bincount(cells, weights=weights, minlength=len(histories) * n)
        return self._best_of(sums.reshape(len(histories), n), limit)

    def _best_of(self, sums: np.ndarray, limit: int) -> list[dict[str, float]]:
        """Each row's `limit` highest non-zero sums -> {item: sum}, best first (ties: the
        item tracked first), with one partition and one sort for all the rows: per user,
        the numpy calls and the sort of the callers' `top_unseen` took ~10% of the worker's
        CPU at 300 events/s for users with a history."""
        n = sums.shape[1]
        if limit < n:
            top = np.argpartition(-sums, limit - 1, axis=1)[:, :limit]
        else:
            top = np.broadcast_to(np.arange(n), sums.shape)
        values = np.take_along_axis(sums, top, axis=1)
        order = np.lexsort((top, -values))  # per row: best first, then by row
        top = np.take_along_axis(top, order, axis=1)
        values = np.take_along_axis(values, order, axis=1)
        # Sums are never negative: a row's zeros (items not co-visited) come last.
        counts = np.count_nonzero(values, axis=1).tolist()
        item_of = self._item_of
        return [
            dict(zip(map(item_of.__getitem__, rows[:m]), scores[:m], strict=True))
            for rows, scores, m in zip(top.tolist(), values.tolist(), counts, strict=True)
        ]

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(items, counts, partners, together) of the tracked rows (snapshots)."""
        n = len(self._item_of)
        return list(self._item_of), self._counts[:n], self._partners[:n], self._together[:n]

    def restore(
        self, items: list[str], counts: np.ndarray, partners: np.ndarray, together: np.ndarray
    ) -> None:
        """Take back what `arrays` gave (same `neighbours`; capacity may differ)."""
        n = len(items)
        if partners.shape != (n, self.slots) or n > self.capacity:
            raise ValueError("co-visitation snapshot does not fit these settings")
        rows = max(min(_INITIAL_ROWS, self.capacity), n)
        self._item_of = list(items)
        self._row_of = {item: row for row, item in enumerate(items)}
        self._counts = np.zeros(rows)
        self._counts[:n] = counts
        self._partners = np.full((rows, self.slots), -1, dtype=np.int32)
        self._partners[:n] = partners
        self._together = np.zeros((rows, self.slots), dtype=np.float32)
        self._together[:n] = together

    def _row(self, item_id: str) -> int:
        row = self._row_of.get(item_id)
        if row is None:
            row = len(self._item_of)
            if row == len(self._counts):
                self._grow(min(2 * row, self.capacity))
            self._row_of[item_id] = row
            self._item_of.append(item_id)
        return row

    def _pair(self, rows: Sequence[int], partners: Sequence[int]) -> None:
        """Count each (row, partner) once per occurrence: in the partner's slot of the row
        if it has one, else in a slot of its own (`_place`)."""
        if not rows:
            return
        span = len(self._counts)
        keys, counts = np.unique(
            np.array(rows, dtype=np.int64) * span + np.array(partners, dtype=np.int64),
            return_counts=True,
        )
        row, partner = np.divmod(keys, span)
        match = self._partners[row] == partner[:, None]  # [pairs, slots]
        found = match.any(axis=1)
        slot = match.argmax(axis=1)
        # A partner holds one slot of a row: the (row, slot) cells are distinct.
        self._together[row[found], slot[found]] += counts[found]
        new = ~found
        if new.any():
            self._place(row[new], partner[new], counts[new], row[found], slot[found])

    def _place(
        self,
        rows: np.ndarray,
        partners: np.ndarray,
        counts: np.ndarray,
        counted_rows: np.ndarray,
        counted_slots: np.ndarray,
    ) -> None:
        """New partners of their rows (sorted by row), most frequent first (ties: lower row
        number), into each row's weakest slots (empty ones count 0), never a slot counted
        in this batch; those beyond the slots left are dropped."""
        order = np.lexsort((partners, -counts, rows))
        rows, partners, counts = rows[order], partners[order], counts[order]
        targets, first, new = np.unique(rows, return_index=True, return_counts=True)
        strength = self._together[targets].astype(np.float64)
        at = np.searchsorted(targets, counted_rows)
        ours = (at < len(targets)) & (targets[np.minimum(at, len(targets) - 1)] == counted_rows)
        strength[at[ours], counted_slots[ours]] = np.inf
        slot = np.zeros(len(rows), dtype=np.int64)
        fits = np.zeros(len(rows), dtype=bool)
        # Most rows gain one partner (an earlier item gains the consumed one): the weakest
        # slot, without sorting the row.
        one = np.flatnonzero(new == 1)
        weakest = strength[one].argmin(axis=1)
        slot[first[one]] = weakest
        fits[first[one]] = np.isfinite(strength[one, weakest])
        many = np.flatnonzero(new > 1)
        if len(many):
            ranked = np.argsort(strength[many], axis=1, kind="stable")
            room = np.isfinite(strength[many]).sum(axis=1)
            owner, rank = segment_cells(new[many])  # the row (of `many`) and rank of each
            edges = first[many][owner] + rank
            fits[edges] = rank < room[owner]
            slot[edges] = ranked[owner, np.minimum(rank, strength.shape[1] - 1)]
        self._partners[rows[fits], slot[fits]] = partners[fits]
        self._together[rows[fits], slot[fits]] = counts[fits]

    def _grow(self, rows: int) -> None:
        extra = rows - len(self._counts)
        self._counts = np.concatenate([self._counts, np.zeros(extra)])
        self._partners = np.vstack(
            [self._partners, np.full((extra, self.slots), -1, dtype=np.int32)]
        )
        self._together = np.vstack(
            [self._together, np.zeros((extra, self.slots), dtype=np.float32)]
        )

    def _forget_rarest(self, keep: int) -> None:
        n = len(self._item_of)
        kept = np.sort(np.argsort(-self._counts[:n], kind="stable")[: max(keep, 0)])
        renumber = np.full(n + 1, -1, dtype=np.int32)  # index n: an empty slot (-1) stays -1
        renumber[kept] = np.arange(len(kept), dtype=np.int32)
        partners = renumber[self._partners[kept]]
        together = np.where(partners >= 0, self._together[kept], 0.0).astype(np.float32)
        counts = self._counts[kept]
        self._item_of = [self._item_of[i] for i in kept.tolist()]
        self._row_of = {item: row for row, item in enumerate(self._item_of)}
        rows = len(self._counts)
        self._counts = np.zeros(rows)
        self._counts[: len(kept)] = counts
        self._partners = np.full((rows, self.slots), -1, dtype=np.int32)
        self._partners[: len(kept)] = partners
        self._together = np.zeros((rows, self.slots), dtype=np.float32)
        self._together[: len(kept)] = together


def top_unseen(scores: dict[str, float], seen: Collection[str], n: int) -> list[str]:
    """The first n items of `scores` (best first, as `scores_many` orders them) that score
    above 0 and the user has not seen. `seen` as a set where the caller has one: a
    long-lived user's 1,000 make a set in ~20 µs."""
    excluded = seen if isinstance(seen, set | frozenset) else set(seen)
    out: list[str] = []
    if n <= 0:
        return out
    for item, score in scores.items():
        if score > 0 and item not in excluded:
            out.append(item)
            if len(out) == n:
                break
    return out
