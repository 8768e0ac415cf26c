import gc

from prometheus_client import CollectorRegistry

from worker.metrics import Metrics
from worker.store import UserState
from worker.store.user_cache import UserCache


def test_garbage_collector_time_is_counted_per_generation_while_watched() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    unwatch = metrics.watch_gc()
    try:
        gc.collect()
    finally:
        unwatch()
    labels = {"generation": "2"}
    counted = registry.get_sample_value("streamrec_gc_seconds_total", labels)
    assert counted is not None and counted > 0
    gc.collect()  # no longer watched: the count stays
    assert registry.get_sample_value("streamrec_gc_seconds_total", labels) == counted


def test_user_state_reads_are_counted_as_cache_hits_and_misses() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    cache = UserCache(10)
    cache.on_lookup = metrics.user_cache_read
    cache.put([UserState("u1")])
    cache.lookup(["u1", "u2", "u3"])
    cache.lookup(["u1"])
    hits = registry.get_sample_value("streamrec_user_cache_reads_total", {"result": "hit"})
    misses = registry.get_sample_value("streamrec_user_cache_reads_total", {"result": "miss"})
    assert (hits, misses) == (2, 2)
