"""The cache of user states: least recently used out, and what a caller does with a state it
got never changes the cache."""

from __future__ import annotations

import numpy as np

from worker.store import Interaction, UserState
from worker.store.user_cache import UserCache


def state(user_id: str, *items: str) -> UserState:
    return UserState(
        user_id,
        history=[Interaction(i, "click", 1.0, float(n), f"e{n}") for n, i in enumerate(items)],
        seen=list(items),
        vector=np.ones(4, dtype=np.float32),
        updated_at=float(len(items)),
        event_keys=bytes(8 * len(items)),
        partition=2,
        item_space="s1",
        latest='{"items": []}',
    )


def test_a_cached_state_reads_back_equal_and_as_named_tuples() -> None:
    cache = UserCache(10)
    written = state("u1", "a", "b")
    cache.put([written])
    found, missing = cache.lookup(["u1", "u2"])
    assert missing == ["u2"]
    got = found["u1"]
    assert got.history == written.history and got.seen == written.seen
    assert isinstance(got.history[0], Interaction) and got.history[1].item_id == "b"
    assert (got.updated_at, got.event_keys, got.partition) == (2.0, bytes(16), 2)
    assert (got.item_space, got.latest) == ("s1", '{"items": []}')
    assert (cache.hits, cache.misses) == (1, 1)


def test_changing_a_state_read_or_written_leaves_the_cached_one_alone() -> None:
    cache = UserCache(10)
    written = state("u1", "a")
    cache.put([written])
    written.seen.append("x")
    written.partition = 7
    got = cache.lookup(["u1"])[0]["u1"]
    got.history.append(Interaction("y", "view", 1.0, 9.0))
    got.latest = "changed"
    again = cache.lookup(["u1"])[0]["u1"]
    assert again.seen == ["a"] and again.partition == 2
    assert [i.item_id for i in again.history] == ["a"] and again.latest == '{"items": []}'


def test_the_least_recently_used_user_leaves_first() -> None:
    cache = UserCache(2)
    cache.put([state("u1"), state("u2")])
    cache.lookup(["u1"])  # read: u2 is now the least recent
    cache.put([state("u3")])
    assert len(cache) == 2
    assert cache.lookup(["u1", "u2", "u3"])[1] == ["u2"]


def test_a_dropped_user_and_a_cache_of_size_zero_hold_nothing() -> None:
    cache = UserCache(2)
    cache.put([state("u1"), state("u2")])
    cache.drop(["u1", "unknown"])
    assert cache.lookup(["u1", "u2"])[1] == ["u1"]
    none = UserCache(0)
    none.put([state("u1")])
    assert len(none) == 0 and none.lookup(["u1"])[1] == ["u1"]
