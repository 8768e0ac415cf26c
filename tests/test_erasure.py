import orjson
import pytest

from worker.erasure import ErasureLog, erasure_messages, split_erasures, user_hash
from worker.events import Forget, UserEvent, parse_message
from worker.settings import load_settings
from worker.validation import InvalidMessage


def _event(user: str, ts: float, n: int = 0) -> UserEvent:
    return UserEvent(f"e{user}{n}", user, "i", "click", None, ts)


def test_a_forget_event_and_a_tombstone_are_erasure_requests() -> None:
    forget = {"event_id": "f1", "user_id": "u1", "type": "forget", "ts": 100}
    assert parse_message(b"u1", orjson.dumps(forget), received_at=5.0) == Forget("f1", "u1", 100.0)
    assert parse_message(b"u1", None, received_at=5.0) == Forget("", "u1", 5.0)
    with pytest.raises(InvalidMessage, match="key"):
        parse_message(None, None, received_at=5.0)
    with pytest.raises(InvalidMessage, match="key must equal"):
        parse_message(b"u2", orjson.dumps(forget), received_at=5.0)


def test_events_before_a_forget_are_dropped_and_those_after_it_kept() -> None:
    parsed = [
        (0, _event("u", 1.0, 1)),
        (0, _event("v", 1.0)),
        (0, Forget("f", "u", 2.0)),
        (0, _event("u", 3.0, 2)),
    ]
    events, erasures, dropped = split_erasures(parsed, ErasureLog())
    assert [e.event_id for e in events] == ["ev0", "eu2"]
    assert [(e.user_id, e.erased_up_to) for e in erasures] == [("u", 2.0)] and dropped == 1


def test_events_dated_up_to_an_earlier_erasure_are_dropped_as_a_replay() -> None:
    log = ErasureLog(b"secret")
    log.mark_user("u", 10.0)
    events, erasures, dropped = split_erasures(
        [(0, _event("u", 9.0)), (0, _event("u", 11.0, 1))], log
    )
    assert [e.ts for e in events] == [11.0] and erasures == [] and dropped == 1
    assert log.erased_up_to("other") is None


def test_the_confirmation_names_the_user_by_hash_only_and_the_list_is_tombstoned() -> None:
    settings = load_settings()
    erasure = split_erasures([(3, Forget("f", "alice", 7.0))], ErasureLog())[1][0]
    tombstone, confirmation = erasure_messages(erasure, settings, b"k", now=8.0)
    assert (tombstone.topic, tombstone.key, tombstone.value) == (
        settings.recommendations_topic,
        b"alice",
        None,
    )
    doc = orjson.loads(confirmation.value or b"")
    assert confirmation.key == user_hash("alice", b"k").encode()
    assert b"alice" not in (confirmation.value or b"")
    assert doc["erased_up_to"] == 7.0 and doc["event_id"] == "f"
    log = ErasureLog(b"k")
    log.absorb(confirmation.value)
    assert log.erased_up_to("alice") == 7.0
    assert user_hash("alice", b"k") != user_hash("alice"), "the key changes the pseudonym"
