import pytest

from worker.trending import Trending, counts_as_consumption

DAY = 86400.0


def test_counts_decay_by_half_each_half_life() -> None:
    trending = Trending(half_life_s=DAY, capacity=10)
    trending.add("a", 0.0)
    trending.add("a", 0.0)
    trending.add("b", DAY)
    assert trending.score("a", DAY) == pytest.approx(1.0)
    assert trending.score("b", DAY) == pytest.approx(1.0)
    assert trending.score("a", 3 * DAY) == pytest.approx(0.25)
    assert trending.latest_ts == DAY


def test_top_orders_by_decayed_count_normalised_to_the_leader() -> None:
    trending = Trending(half_life_s=DAY, capacity=10)
    for _ in range(3):
        trending.add("old", 0.0)  # 3 counts, two half-lives ago -> 0.75 now
    trending.add("new", 2 * DAY)
    assert trending.top(5) == {"new": pytest.approx(1.0), "old": pytest.approx(0.75)}
    assert list(trending.top(1)) == ["new"]
    assert trending.top(0) == {}


def test_out_of_order_events_count_with_their_own_age() -> None:
    trending = Trending(half_life_s=DAY, capacity=10)
    trending.add("a", 2 * DAY)
    trending.add("b", DAY)  # late: already half decayed at 2 days
    assert trending.top(2) == {"a": pytest.approx(1.0), "b": pytest.approx(0.5)}


def test_long_runs_rebase_without_overflow() -> None:
    trending = Trending(half_life_s=1.0, capacity=10)
    trending.add("a", 0.0)
    trending.add("b", 10_000.0)  # 10,000 half-lives later: 2 ** 10000 would overflow
    trending.add("b", 10_000.0)
    assert trending.top(2) == {"b": 1.0}  # "a" decayed to nothing and was dropped
    assert trending.score("b", 10_001.0) == pytest.approx(1.0)


def test_memory_is_bounded_by_forgetting_the_least_popular() -> None:
    trending = Trending(half_life_s=DAY, capacity=2)
    for _ in range(3):
        trending.add("hit", 0.0)
    trending.add("runner-up", 0.0)
    trending.add("runner-up", 0.0)
    for n in range(50):
        trending.add(f"once-{n}", 0.0)
        assert len(trending) <= 4
    assert list(trending.top(2)) == ["hit", "runner-up"]


def test_skips_and_dislikes_are_not_consumption() -> None:
    assert counts_as_consumption("rating") and counts_as_consumption("view")
    assert not counts_as_consumption("skip") and not counts_as_consumption("dislike")


def test_top_kept_between_calls_equals_a_full_scan() -> None:
    import random

    rng = random.Random(7)
    cached = Trending(half_life_s=DAY, capacity=0)
    for step in range(300):
        for _ in range(rng.randrange(1, 8)):
            cached.add(f"i{rng.randrange(400)}", step * 60.0)
        n = rng.choice((5, 20, 20, 20))
        full = Trending(half_life_s=DAY, capacity=0)
        full.restore(cached.state())  # a fresh tracker scans everything
        assert cached.top(n) == full.top(n)


def test_top_rejects_negative_amounts() -> None:
    with pytest.raises(ValueError):
        Trending(half_life_s=DAY, capacity=10).add("a", 0.0, amount=-1.0)
