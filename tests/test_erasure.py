from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from worker.changelog import OffsetFile, UserStateRestorer
from worker.changelog.codec import encode_user
from worker.erasure import Erasure, ErasureLog, erasure_messages, split_erasures, user_hash
from worker.events import Forget, UserEvent, parse_message
from worker.records import BatchResult
from worker.settings import load_settings
from worker.store import EdgeVectorStore, UserState
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


def test_a_forget_needs_its_key_and_erases_up_to_its_arrival_at_least() -> None:
    forget = {"event_id": "f1", "user_id": "u1", "type": "forget", "ts": 100}
    with pytest.raises(InvalidMessage, match="key"):
        parse_message(None, orjson.dumps(forget), received_at=5.0)
    late = parse_message(b"u1", orjson.dumps(forget), received_at=500.0)
    assert isinstance(late, Forget) and late.ts == 500.0
    with pytest.raises(InvalidMessage, match="EVENT_MAX_FUTURE_S"):
        parse_message(b"u1", orjson.dumps(forget), received_at=5.0, latest_ts=50.0)


def test_a_split_batch_never_saves_a_state_its_later_piece_erased() -> None:
    first = BatchResult(user_states=[UserState("u"), UserState("v")])
    later = BatchResult(erasures=[Erasure("u", "f", 2.0, 0)])
    assert [s.user_id for s in first.merge(later).user_states] == ["v"]
    again = BatchResult(user_states=[UserState("u")])
    fresh = BatchResult(
        erasures=[Erasure("u", "f", 2.0, 0)], user_states=[UserState("u", updated_at=3.0)]
    )
    assert [s.updated_at for s in again.merge(fresh).user_states] == [3.0]


async def test_a_restored_erasure_deletes_the_state_and_keeps_only_what_came_after(
    tmp_path: Path,
) -> None:
    store = EdgeVectorStore(tmp_path / "edge", 4)
    await store.open()
    try:
        restorer = UserStateRestorer(load_settings(), store, OffsetFile(tmp_path / "o.json"))
        old = UserState("u", seen=["a", "b"], updated_at=10.0)
        await store.upsert_users([old, UserState("gone", updated_at=1.0)])
        after = UserState("u", seen=["c"], updated_at=5.0)  # dated before the old state
        records = [
            SimpleNamespace(key=b"u", value=None, partition=0, offset=1),
            SimpleNamespace(key=b"u", value=encode_user(after), partition=0, offset=2),
            SimpleNamespace(key=b"gone", value=None, partition=0, offset=3),
        ]
        await restorer._apply(records)  # type: ignore[arg-type]
        held = await store.get_users(["u", "gone"])
        assert set(held) == {"u"} and held["u"].seen == ["c"]
    finally:
        await store.close()
