from worker.signals import PushLimiter


def test_limiter_allows_one_push_per_user_per_interval() -> None:
    limiter = PushLimiter(min_interval_s=60.0)
    assert limiter.allowed("u", 0.0)
    limiter.mark("u", 0.0)
    assert not limiter.allowed("u", 59.0)
    assert limiter.allowed("u", 60.0)
    assert limiter.allowed("other", 1.0)


def test_limiter_memory_is_bounded_oldest_first() -> None:
    limiter = PushLimiter(min_interval_s=60.0, max_users=2)
    for n, user in enumerate(["a", "b", "c"]):
        limiter.mark(user, float(n))
    assert limiter.allowed("a", 3.0)  # forgotten
    assert not limiter.allowed("b", 3.0) and not limiter.allowed("c", 3.0)
