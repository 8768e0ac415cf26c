from __future__ import annotations

import gc

import numpy as np

from worker.rules import DEFAULT_RULES, ItemRules, Pin
from worker.store import ScoredItem
from worker.store.edge_cache import ItemCache, cached, scored


def _item(n: int, rules: ItemRules = DEFAULT_RULES) -> ScoredItem:
    vector = np.full(4, n, dtype=np.float32)
    return ScoredItem(f"i{n}", 0.0, "c1", ("a", "b"), 10.0 + n, 0.5, vector, rules)


def test_a_cached_item_comes_back_whole_with_the_score_asked_for() -> None:
    pinned = ItemRules(boost=2.0, pin=Pin(1, "c1"))
    for item in (_item(1), _item(2, pinned)):
        hit = scored(cached(item), 0.75)
        assert hit == ScoredItem(
            item.item_id, 0.75, "c1", ("a", "b"), item.created_at, 0.5, rules=item.rules
        )
        assert hit.vector is item.vector
        assert scored(cached(item), 0.75, keep_vector=False).vector is None


def test_cached_items_without_rules_are_not_walked_by_the_garbage_collector() -> None:
    # The cache is most of a worker's heap: a full collection would walk every entry.
    cache = ItemCache(101)
    for n in range(100):
        cache.put(n, cached(_item(n)))
    cache.put(100, cached(_item(100, ItemRules(available=False))))
    gc.collect()
    gc.collect()  # an entry is untracked once its tags tuple is, maybe a pass later
    found, missing = cache.lookup([0, 50, 100, 101])
    assert missing == [101]
    assert not gc.is_tracked(found[0]) and not gc.is_tracked(found[50])
    assert gc.is_tracked(found[100])  # rules of its own: an object, tracked (rare)


def test_the_cache_keeps_the_most_recently_used_items_up_to_its_size() -> None:
    cache = ItemCache(2)
    for n in range(3):
        cache.put(n, cached(_item(n)))
        cache.lookup([0])  # 0 stays the most recently used
    found, missing = cache.lookup([0, 1, 2])
    assert sorted(found) == [0, 2] and missing == [1]
    cache.discard(0)
    assert cache.lookup([0])[1] == [0]
