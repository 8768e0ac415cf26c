from worker.stack.worker_process import stage_means_ms


def test_stage_means_are_per_batch_milliseconds_of_one_pipeline_with_its_batch_size() -> None:
    metrics = {
        'streamrec_stage_seconds_sum{pipeline="events",stage="triton"}': 0.5,
        'streamrec_stage_seconds_count{pipeline="events",stage="triton"}': 100.0,
        'streamrec_stage_seconds_sum{pipeline="events",stage="rank"}': 0.0,
        'streamrec_stage_seconds_count{pipeline="events",stage="rank"}': 0.0,
        'streamrec_stage_seconds_sum{pipeline="items",stage="triton"}': 9.0,
        'streamrec_stage_seconds_count{pipeline="items",stage="triton"}': 3.0,
        'streamrec_batch_size_sum{topic="user-events"}': 1200.0,
        'streamrec_batch_size_count{topic="user-events"}': 100.0,
        'streamrec_gc_seconds_total{generation="0"}': 0.15,
        'streamrec_gc_seconds_total{generation="2"}': 0.05,
    }
    assert stage_means_ms(metrics, "events", "user-events") == {
        "triton": 5.0,
        "batch_size": 12.0,
        "gc": 2.0,
    }
    assert stage_means_ms({}, "events", "user-events") == {}
