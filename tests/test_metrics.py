import gc

from prometheus_client import CollectorRegistry

from worker.metrics import Metrics


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
