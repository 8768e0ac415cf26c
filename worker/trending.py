"""Trending items: time-decayed popularity maintained from the event stream (pure, in memory).

Each consumption event adds 1 to its item, and every count halves each `half_life_s` of
event time. Counts are stored scaled to a reference time, so an event costs O(1) and the
order of items never depends on "now" (every item decays by the same factor). Memory is
bounded: beyond 2 x capacity items the least popular are forgotten (capacity 0: unbounded,
for offline use).

`top(n)` is asked once per micro-batch, so it must not scan every tracked item: it keeps the
last top and the items added to since. Stored counts only grow, so an item outside the last
top that was not added to cannot have overtaken it: the new top is among the old top and
the changed items, O(n + changed) per call, exact.

Every worker holds the same tracker: the updates of every worker reach it through the
signals changelog, and a restart restores it from a snapshot (worker.changelog.signals).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

# Rebase the stored counts once events are this many half-lives past the reference time,
# long before 2 ** exponent could overflow a float.
_REBASE_HALF_LIVES = 256.0


class Trending:
    def __init__(self, *, half_life_s: float, capacity: int) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be > 0")
        self.half_life_s = half_life_s
        self.capacity = capacity
        self._scaled: dict[str, float] = {}  # count x 2 ** ((t_ref - t_event) / half-life)
        self._reference_ts: float | None = None
        self.latest_ts = 0.0  # the newest event time seen: "now" in event time
        self._top: list[tuple[str, float]] | None = None  # the last top(n), best first
        self._top_n = 0
        self._changed: set[str] = set()  # items added to since the last top

    def __len__(self) -> int:
        return len(self._scaled)

    def add(self, item_id: str, ts: float, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("amounts are counts: never negative")
        if self._reference_ts is None:
            self._reference_ts = ts
        exponent = (ts - self._reference_ts) / self.half_life_s
        if exponent > _REBASE_HALF_LIVES:
            self._rebase(ts)
            exponent = 0.0
        self._scaled[item_id] = self._scaled.get(item_id, 0.0) + amount * math.exp2(exponent)
        self._changed.add(item_id)
        self.latest_ts = max(self.latest_ts, ts)
        if self.capacity and len(self._scaled) > 2 * self.capacity:
            keep = heapq.nlargest(self.capacity, self._scaled.items(), key=lambda kv: kv[1])
            self._scaled = dict(keep)
            self._top = None

    def score(self, item_id: str, now: float) -> float:
        """The decayed count of one item at event time `now`."""
        if self._reference_ts is None:
            return 0.0
        scaled = self._scaled.get(item_id, 0.0)
        return scaled * math.exp2((self._reference_ts - now) / self.half_life_s)

    def top(self, n: int) -> dict[str, float]:
        """The n most popular items -> popularity normalised to (0, 1] (the top item is 1)."""
        if n <= 0 or not self._scaled:
            return {}
        if self._top is None or n != self._top_n or len(self._changed) > len(self._scaled) // 2:
            pool: Iterable[tuple[str, float]] = self._scaled.items()
        else:
            scaled = self._scaled
            pool = {**dict(self._top), **{k: scaled[k] for k in self._changed}}.items()
        # Ties go by id, so the cached and the full scan always pick the same items.
        best = heapq.nlargest(n, pool, key=lambda kv: (kv[1], kv[0]))
        self._top, self._top_n = best, n
        self._changed.clear()
        peak = best[0][1]
        return {item_id: scaled / peak for item_id, scaled in best if scaled > 0}

    def state(self) -> dict[str, object]:
        """Everything the tracker holds (snapshots); `restore` takes it back."""
        return {
            "scaled": self._scaled,
            "reference_ts": self._reference_ts,
            "latest_ts": self.latest_ts,
        }

    def restore(self, state: dict[str, object]) -> None:
        self._scaled = {str(k): float(v) for k, v in state["scaled"].items()}  # type: ignore[attr-defined]
        reference = state["reference_ts"]
        self._reference_ts = None if reference is None else float(reference)  # type: ignore[arg-type]
        self.latest_ts = float(state["latest_ts"])  # type: ignore[arg-type]
        self._top = None

    def _rebase(self, ts: float) -> None:
        assert self._reference_ts is not None
        factor = math.exp2((self._reference_ts - ts) / self.half_life_s)
        # Counts that decayed to nothing go: they would only hold memory.
        self._scaled = {k: v * factor for k, v in self._scaled.items() if v * factor > 1e-12}
        self._reference_ts = ts
        self._top = None


def counts_as_consumption(event_type: str) -> bool:
    """Skips and dislikes are not demand; everything else (a 1-star rating too) is."""
    return event_type not in ("skip", "dislike")
