"""The floor echo answers like the worker (per-user coalescing, same DLQ rule) without models."""

from __future__ import annotations

import orjson

from load_tests.echo import echo_batch
from worker.records import RawMessage
from worker.settings import load_settings


def _msg(offset: int, user: str, event_id: str, etype: str = "view") -> RawMessage:
    value = orjson.dumps(
        {"event_id": event_id, "user_id": user, "item_id": "1", "type": etype, "ts": 1.0}
    )
    return RawMessage("user-events", 0, offset, user.encode(), value, 1.0)


def test_events_of_one_user_in_a_batch_get_one_answer_listing_them_all() -> None:
    settings = load_settings(recommendations_topic="recs")
    msgs = [_msg(0, "a", "e1"), _msg(1, "b", "e2"), _msg(2, "a", "e3")]
    outputs, letters = echo_batch(msgs, settings, now=5.0)
    assert letters == []
    answers = {out.key: orjson.loads(out.value) for out in outputs}
    assert answers[b"a"]["event_ids"] == ["e1", "e3"]
    assert answers[b"a"]["event_id"] == "e3"
    assert answers[b"b"]["event_ids"] == ["e2"]
    assert answers[b"a"]["items"] == []
    assert {out.topic for out in outputs} == {"recs"}


def test_without_coalescing_every_event_gets_its_own_answer() -> None:
    settings = load_settings(coalesce_events=False)
    outputs, _ = echo_batch([_msg(0, "a", "e1"), _msg(1, "a", "e2")], settings, now=5.0)
    assert [orjson.loads(out.value)["event_ids"] for out in outputs] == [["e1"], ["e2"]]


def test_invalid_events_are_dead_lettered_with_their_original_message() -> None:
    settings = load_settings()
    bad = _msg(1, "a", "e2", etype="not-a-type")
    outputs, letters = echo_batch([_msg(0, "a", "e1"), bad], settings, now=5.0)
    assert [orjson.loads(out.value)["event_ids"] for out in outputs] == [["e1"]]
    assert len(letters) == 1
    assert letters[0].source is bad
    assert letters[0].stage == "decode"


def test_the_raw_echo_answers_each_event_and_refuses_what_does_not_decode() -> None:
    from load_tests.raw_echo import answer

    good = orjson.loads(_msg(0, "u1", "e1").value)
    answered = answer(orjson.dumps(good), now=5.0)
    assert answered is not None
    assert orjson.loads(answered) == {
        "user_id": "u1",
        "event_id": "e1",
        "items": [],
        "model_version": "raw-echo",
        "generated_at": 5.0,
        "strategy": "echo",
    }
    assert answer(b"not json", now=5.0) is None
    assert answer(None, now=5.0) is None
    assert answer(orjson.dumps({**good, "type": "not-an-event-type"}), now=5.0) is None
