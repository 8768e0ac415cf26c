"""The books of a run: answers matched to events, duplicates, DLQ records, missing events."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from load_tests.matcher import Matcher
from load_tests.schedule import EventIds

IDS = EventIds("run1")


def _matcher(n: int = 6, bad: list[int] | None = None, late_s: float = 10.0) -> Matcher:
    offsets = np.arange(n, dtype=np.float64) * 0.1  # intended send times: 0.0, 0.1, ...
    bad_mask = np.zeros(n, dtype=bool)
    bad_mask[bad or []] = True
    matcher = Matcher(IDS, offsets, bad_mask, late_s=late_s)
    for seq in range(n):
        matcher.on_sent(seq, offsets[seq])
    return matcher


def _answer(*seqs: int, coalesced: bool = True) -> bytes:
    ids = [IDS.event(s) for s in seqs]
    doc: dict[str, object] = {"user_id": "u", "event_id": ids[-1], "items": []}
    if coalesced:
        doc["event_ids"] = ids
    return orjson.dumps(doc)


def _event(seq: int) -> bytes:
    return orjson.dumps({"event_id": IDS.event(seq), "user_id": "u", "type": "bogus"})


def test_a_coalesced_answer_matches_every_event_it_lists() -> None:
    m = _matcher()
    m.on_recommendation(_answer(0, 1, 2), now=0.5)
    counts = m.counts()
    assert counts["matched"] == 3
    assert counts["missing"] == 3
    assert m.latency.count == 3


def test_latency_is_measured_from_the_intended_send_time() -> None:
    m = _matcher()
    m.on_recommendation(_answer(3), now=0.3 + 0.040)
    assert m.latency.summary_ms()["max"] == pytest.approx(40.0, rel=0.01)


def test_an_answer_without_event_ids_falls_back_to_event_id() -> None:
    m = _matcher()
    m.on_recommendation(_answer(4, coalesced=False), now=1.0)
    assert m.counts()["matched"] == 1


def test_repeated_answers_count_as_duplicates_and_are_not_measured_twice() -> None:
    m = _matcher()
    m.on_recommendation(_answer(0, 1), now=0.2)
    m.on_recommendation(_answer(1), now=0.9)
    counts = m.counts()
    assert counts["matched"] == 2
    assert counts["duplicates"] == 1
    assert m.latency.count == 2


def test_unanswered_events_are_missing_and_every_sent_event_is_accounted_for() -> None:
    m = _matcher(n=6, bad=[5])
    m.on_recommendation(_answer(0, 1), now=0.5)
    m.on_dead_letter(_event(5), [("dlq.stage", b"decode")])
    m.on_send_failed(4)
    c = m.counts()
    assert (c["matched"], c["dlq"], c["send_errors"], c["missing"]) == (2, 1, 1, 2)
    assert c["matched"] + c["dlq"] + c["send_errors"] + c["missing"] == c["sent"]
    assert not m.settled()


def test_dead_letters_of_good_events_are_flagged_unexpected() -> None:
    m = _matcher(n=3, bad=[0])
    m.on_dead_letter(_event(0), [("dlq.stage", b"decode")])
    m.on_dead_letter(_event(1), [("dlq.stage", b"embed")])
    c = m.counts()
    assert (c["dlq"], c["bad_sent"], c["dlq_unexpected"]) == (2, 1, 1)
    assert dict(m.dlq_stages) == {"decode": 1, "embed": 1}


def test_answers_to_malformed_events_are_flagged() -> None:
    m = _matcher(n=2, bad=[1])
    m.on_recommendation(_answer(1), now=0.5)
    assert m.counts()["bad_answered"] == 1


def test_other_traffic_is_ignored_and_unreadable_answers_are_errors() -> None:
    m = _matcher()
    m.on_recommendation(orjson.dumps({"event_ids": ["someone-else-1"]}), now=0.5)
    m.on_recommendation(b"not json", now=0.5)
    m.on_recommendation(orjson.dumps({"event_ids": [IDS.event(999)]}), now=0.5)
    c = m.counts()
    assert (c["matched"], c["foreign"], c["response_errors"]) == (0, 1, 2)


def test_settled_once_every_event_is_answered_dead_lettered_or_failed() -> None:
    m = _matcher(n=3, bad=[2])
    m.on_recommendation(_answer(0), now=0.5)
    m.on_send_failed(1)
    assert not m.settled()
    m.on_dead_letter(_event(2), [])
    assert m.settled()


def test_answers_slower_than_the_late_threshold_count_as_late() -> None:
    m = _matcher(late_s=1.0)
    m.on_recommendation(_answer(0), now=0.5)
    m.on_recommendation(_answer(1), now=2.0)
    assert m.counts()["late"] == 1


def test_timeline_samples_lag_and_interval_percentiles() -> None:
    m = _matcher(n=4)
    m.on_recommendation(_answer(0, 1), now=0.25)
    first = m.sample(0.25)
    second = m.sample(0.5)
    assert (first.sent, first.answered, first.lag, first.interval_count) == (4, 2, 2, 2)
    assert first.p50_ms is not None and first.p99_ms is not None and first.max_ms is not None
    assert first.p50_ms <= first.p99_ms <= first.max_ms
    assert second.interval_count == 0 and second.p99_ms is None
