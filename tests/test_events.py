import orjson
import pytest

from worker.events import UserEvent, event_weight, parse_event
from worker.settings import DEFAULT_EVENT_WEIGHTS
from worker.validation import InvalidMessage


def _event(**overrides: object) -> bytes:
    doc = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 1700000000}
    doc.update(overrides)
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


def test_valid_event_parses_into_typed_fields() -> None:
    event = parse_event(b"u1", _event(value=2.5))
    assert event == UserEvent("e1", "u1", "i1", "click", 2.5, 1700000000.0)


def test_iso8601_and_millisecond_timestamps_become_epoch_seconds() -> None:
    iso = parse_event(b"u1", _event(ts="2023-11-14T22:13:20Z"))
    millis = parse_event(b"u1", _event(ts=1700000000123))
    assert iso.ts == 1700000000.0
    assert millis.ts == pytest.approx(1700000000.123)


def test_numeric_ids_are_kept_as_strings() -> None:
    event = parse_event(b"196", _event(user_id=196, item_id=242))
    assert (event.user_id, event.item_id) == ("196", "242")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (None, "empty message"),
        (_event(type="poke"), "'type' must be one of"),
        (_event(user_id=""), "'user_id' is required"),
        (_event(ts=None), "'ts' is required"),
        (_event(ts="2023-11-14T22:13:20"), "time zone"),
        (_event(ts="yesterday"), "not ISO 8601"),
        (_event(type="rating"), "'rating' event needs 'value'"),
        (_event(value="high"), "'value' must be a number"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        parse_event(b"u1", value)


def test_key_must_match_user_id_so_partitioning_stays_per_user() -> None:
    with pytest.raises(InvalidMessage, match="key must equal user_id"):
        parse_event(b"someone-else", _event())


def test_negative_feedback_has_negative_weight_and_ratings_scale_around_three() -> None:
    def weight(etype: str, value: float | None = None) -> float:
        return event_weight(UserEvent("e", "u", "i", etype, value, 0.0), DEFAULT_EVENT_WEIGHTS)

    assert weight("dislike") < 0 < weight("view") < weight("click") < weight("purchase")
    assert weight("skip") < 0
    assert weight("rating", 5) > weight("rating", 3) > 0 > weight("rating", 2) > weight("rating", 1)


def test_context_narrows_categories_and_age() -> None:
    event = parse_event(b"u1", _event(context={"categories": ["Comedy"], "max_age_s": 3600}))
    assert (event.categories, event.max_age_s) == (("Comedy",), 3600.0)
    assert parse_event(b"u1", _event()).categories is None


@pytest.mark.parametrize(
    "context",
    [[], {"categories": "Comedy"}, {"categories": []}, {"categories": [""]}, {"max_age_s": 0}],
)
def test_malformed_context_is_rejected(context: object) -> None:
    with pytest.raises(InvalidMessage, match="context"):
        parse_event(b"u1", _event(context=context))


@pytest.mark.parametrize("etype", [["click"], {"a": 1}, 3, None])
def test_a_type_that_is_not_a_string_is_rejected_as_invalid(etype: object) -> None:
    doc = {"event_id": "e", "user_id": "u", "item_id": "i", "type": etype, "ts": 1.7e9}
    with pytest.raises(InvalidMessage, match="'type' must be one of"):
        parse_event(b"u", orjson.dumps(doc))


def test_an_event_dated_beyond_the_allowed_clock_skew_or_age_is_refused() -> None:
    assert parse_event(b"u1", _event(ts=1_700_000_000), latest_ts=1_700_000_000).ts == 1.7e9
    with pytest.raises(InvalidMessage, match="later than the worker's clock"):
        parse_event(b"u1", _event(ts=1_700_000_001), latest_ts=1_700_000_000)
    with pytest.raises(InvalidMessage, match="older than EVENT_MAX_AGE_S"):
        parse_event(b"u1", _event(ts=1_600_000_000), earliest_ts=1_700_000_000)


@pytest.mark.parametrize("ts", [253_402_300_799, -5, 5e14])  # year 9999 in seconds, ...
def test_a_timestamp_of_no_telling_unit_or_range_is_refused(ts: float) -> None:
    with pytest.raises(InvalidMessage, match="'ts' must"):
        parse_event(b"u1", _event(ts=ts))


def test_context_categories_are_bounded_labels() -> None:
    with pytest.raises(InvalidMessage, match="at most 256"):
        parse_event(b"u1", _event(context={"categories": ["c" * 300]}))
    with pytest.raises(InvalidMessage, match="duplicate key 'type'"):
        parse_event(b"u1", _event()[:-1] + b',"type":"like"}')
