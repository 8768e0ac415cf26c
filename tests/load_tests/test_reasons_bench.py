from load_tests.reasons_bench import run


def test_the_rank_stage_is_timed_with_and_without_reasons() -> None:
    report = run(users=4, history=5, rounds=10)
    assert report["rank_ms_per_batch_with_reasons"] > 0
    assert report["rank_ms_per_batch_without_reasons"] > 0
    assert report["users_per_batch"] == 4
