import orjson

from worker.fanout import PushLimiter, upserted_ids
from worker.records import RawMessage


def _msg(key: str, value: object) -> RawMessage:
    raw = None if value is None else orjson.dumps(value)
    return RawMessage("items", 0, 0, key.encode(), raw, 1700000000.0)


def test_upserted_ids_follow_the_last_write_per_item_and_skip_bad_messages() -> None:
    messages = [
        _msg("a", {"item_id": "a", "title": "A"}),
        _msg("b", {"item_id": "b", "title": "B"}),
        _msg("b", None),  # tombstone after the upsert: b is deleted, not new
        _msg("c", {"item_id": "c"}),  # no content: the items path dead-letters it
        _msg("d", None),
        _msg("d", {"item_id": "d", "text": "back again"}),
    ]
    assert upserted_ids(messages) == ["a", "d"]


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
