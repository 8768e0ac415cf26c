"""The worker's in-memory signals, and the one place batch outcomes change them."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from worker.covisitation import CoVisitation
from worker.records import SignalUpdates
from worker.settings import Settings
from worker.trending import Trending


class PushLimiter:
    """Remembers when each user last got a push; bounded (the oldest entries go first,
    and they are the ones whose interval has passed anyway)."""

    def __init__(self, min_interval_s: float, max_users: int = 100_000) -> None:
        self.min_interval_s = min_interval_s
        self.max_users = max_users
        self._last: OrderedDict[str, float] = OrderedDict()

    def allowed(self, user_id: str, now: float) -> bool:
        last = self._last.get(user_id)
        return last is None or now - last >= self.min_interval_s

    def forget(self, user_id: str) -> None:
        self._last.pop(user_id, None)

    def mark(self, user_id: str, now: float) -> None:
        self._last[user_id] = now
        self._last.move_to_end(user_id)
        while len(self._last) > self.max_users:
            self._last.popitem(last=False)


@dataclass(slots=True)
class Signals:
    trending: Trending
    covisitation: CoVisitation
    push_limiter: PushLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Signals:
        return cls(
            trending=Trending(
                half_life_s=settings.trending_half_life_s,
                # Tracking more items than are shown keeps the ranking right at the cut-off.
                capacity=max(10 * settings.trending_size, 1000),
            ),
            covisitation=CoVisitation(
                neighbours=settings.covisitation_neighbours, capacity=settings.covisitation_items
            ),
            push_limiter=PushLimiter(settings.fanout_user_interval_s),
        )

    def apply(self, updates: SignalUpdates) -> None:
        """Step 3 of the checkpoint: after the batch's outputs are confirmed."""
        for item_id, ts in updates.trending:
            self.trending.add(item_id, ts)
        self.covisitation.add_many(updates.covisits)
        for user_id, at in updates.pushes:
            self.push_limiter.mark(user_id, at)
