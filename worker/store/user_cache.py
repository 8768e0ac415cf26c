"""The embedded store's write-through cache of user states: the state last written for each
of the most recently written or read users, least recently used out, bounded. Exact
because the embedded store is its users collection's only writer; a server's collection is
shared by every worker of the group, so the server store keeps none.

Reading a long-lived user from the engine costs ~0.25 CPU ms at the default windows (50
events, 1,000 seen items and digests): the payload's conversion, then JSON and base64
decoding. A user's next event usually comes seconds after the last, so most reads of an
active user are answered here.

Entries are plain tuples of plain values, like the item cache's: Python's cyclic GC stops
tracking them, where each cached `UserState` and its named tuples would be walked by every
full collection. The state is rebuilt on each read, so a caller may change what it gets
without changing the cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from worker.store.base import Interaction, UserState

# (user_id, history as (item_id, type, weight, ts, event_id) tuples, seen, vector,
# updated_at, event_keys, partition, item_space, latest)
CachedUser = tuple[
    str,
    tuple[tuple[str, str, float, float, str], ...],
    tuple[str, ...],
    np.ndarray | None,
    float,
    bytes,
    int,
    str,
    str,
]


def cached(state: UserState) -> CachedUser:
    return (
        state.user_id,
        tuple(map(tuple, state.history)),  # type: ignore[arg-type]
        tuple(state.seen),
        state.vector,
        state.updated_at,
        state.event_keys,
        state.partition,
        state.item_space,
        state.latest,
    )


def rebuilt(entry: CachedUser) -> UserState:
    user_id, history, seen, vector, updated_at, event_keys, partition, space, latest = entry
    return UserState(
        user_id=user_id,
        history=list(map(Interaction._make, history)),
        seen=list(seen),
        vector=vector,
        updated_at=updated_at,
        event_keys=event_keys,
        partition=partition,
        item_space=space,
        latest=latest,
    )


class UserCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, CachedUser] = OrderedDict()
        self.hits = 0
        self.misses = 0
        # Told (hits, misses) of each lookup: the worker's metrics.
        self.on_lookup: Callable[[int, int], None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, user_ids: Sequence[str]) -> tuple[dict[str, UserState], list[str]]:
        """(the cached users' states, the ids to read from the engine)."""
        found: dict[str, UserState] = {}
        missing: list[str] = []
        entries = self._entries
        for user_id in user_ids:
            entry = entries.get(user_id)
            if entry is None:
                missing.append(user_id)
            else:
                entries.move_to_end(user_id)
                found[user_id] = rebuilt(entry)
        self.hits += len(found)
        self.misses += len(missing)
        if self.on_lookup is not None:
            self.on_lookup(len(found), len(missing))
        return found, missing

    def put(self, states: Iterable[UserState]) -> None:
        """States just written to the engine (or read from it: the same)."""
        if not self.size:
            return
        entries = self._entries
        for state in states:
            entries[state.user_id] = cached(state)
            entries.move_to_end(state.user_id)
        while len(entries) > self.size:
            entries.popitem(last=False)

    def drop(self, user_ids: Iterable[str]) -> None:
        """Deleted, or a write that failed: the engine may hold either state."""
        for user_id in user_ids:
            self._entries.pop(user_id, None)

    def clear(self) -> None:
        self._entries.clear()
