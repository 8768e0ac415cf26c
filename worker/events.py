"""Where a `user-events` message is parsed and validated (pure, no I/O).

Contract (key = user_id):
    {"event_id", "user_id", "item_id", "type", "value", "ts", "context"}
`type` is one of view|click|like|share|purchase|skip|dislike|rating; `value` is optional
(the rating for `type=rating`, 1..5); `ts` is epoch seconds or an ISO 8601 string; the
optional `context` narrows the answer: {"categories": [...], "max_age_s": seconds}.

Erasure (worker/erasure.py): {"event_id", "user_id", "type": "forget", "ts"} (no item), or
a tombstone (null value) keyed by the user id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from worker.settings import EventType
from worker.validation import (
    InvalidMessage,
    check_id,
    check_label,
    check_unknown_fields,
    decode_json_object,
    parse_timestamp,
    require_id,
)

FIELDS = {"event_id", "user_id", "item_id", "type", "value", "ts", "context"}

EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
MAX_CONTEXT_CATEGORIES = 64


@dataclass(frozen=True, slots=True)
class UserEvent:
    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float | None
    ts: float  # epoch seconds
    # From the optional `context`: recommend only these categories / items this new.
    categories: tuple[str, ...] | None = None
    max_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class Forget:
    """A user's request to be erased: a `forget` event, or a tombstone on user-events."""

    event_id: str  # the forget event's id ("" for a tombstone)
    user_id: str
    ts: float  # epoch seconds: events of the user up to this time are never used again


def parse_message(
    key: bytes | None,
    value: bytes | None,
    *,
    received_at: float,
    latest_ts: float | None = None,
    earliest_ts: float | None = None,
) -> UserEvent | Forget:
    """An event, or an erasure request (a `forget` event or a tombstone)."""
    if value is None:
        if not key:
            raise InvalidMessage("a tombstone (null value) needs the user_id as its key")
        return Forget("", check_id(key.decode("utf-8", "replace"), "key"), received_at)
    doc = decode_json_object(value)
    if doc.get("type") == "forget":
        return _forget(key, doc, received_at, latest_ts)
    return parse_event(key, value, latest_ts=latest_ts, earliest_ts=earliest_ts, doc=doc)


def _forget(
    key: bytes | None, doc: dict[str, Any], received_at: float, latest_ts: float | None
) -> Forget:
    """A forget needs its key (the user's partition: where the user's state lives); it
    erases up to its own time or its arrival, whichever is later (an old `ts` must not
    leave the events since open to a replay), never into the future."""
    check_unknown_fields(doc, FIELDS)
    if key is None:
        raise InvalidMessage("a forget event needs the user_id as its key")
    user_id = _user_id(doc, key)
    ts = parse_timestamp(doc.get("ts"))
    if latest_ts is not None and ts > latest_ts:
        raise InvalidMessage("'ts' is later than the worker's clock allows (EVENT_MAX_FUTURE_S)")
    return Forget(require_id(doc, "event_id"), user_id, max(ts, received_at))


def _user_id(doc: dict[str, object], key: bytes | None) -> str:
    user_id = require_id(doc, "user_id")
    if key is not None and key.decode("utf-8", "replace") != user_id:
        raise InvalidMessage("message key must equal user_id (events are partitioned by user)")
    return user_id


def parse_event(
    key: bytes | None,
    value: bytes | None,
    *,
    latest_ts: float | None = None,
    earliest_ts: float | None = None,
    doc: dict[str, Any] | None = None,
) -> UserEvent:
    """Validate one user event; raise InvalidMessage with a reason for the DLQ. An event
    dated after `latest_ts` (the worker's clock plus EVENT_MAX_FUTURE_S) is refused: one
    far-future event would otherwise decay every other item's trending count to nothing.
    `doc`: the value already decoded."""
    doc = decode_json_object(value) if doc is None else doc
    check_unknown_fields(doc, FIELDS)
    event_id = require_id(doc, "event_id")
    user_id = _user_id(doc, key)
    item_id = require_id(doc, "item_id")
    etype = doc.get("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:
        raise InvalidMessage(f"'type' must be one of {sorted(EVENT_TYPES)}, got {etype!r}")
    raw_value = doc.get("value")
    value_f: float | None = None
    if raw_value is not None:
        if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
            raise InvalidMessage(f"'value' must be a number, got {raw_value!r}")
        value_f = float(raw_value)
    if etype == "rating" and (value_f is None or not 0.0 <= value_f <= 5.0):
        raise InvalidMessage("a 'rating' event needs 'value' between 0 and 5")
    ts = parse_timestamp(doc.get("ts"))
    if latest_ts is not None and ts > latest_ts:
        raise InvalidMessage(
            f"'ts' is later than the worker's clock allows (by {ts - latest_ts:.0f} s over "
            "EVENT_MAX_FUTURE_S)"
        )
    if earliest_ts is not None and ts < earliest_ts:
        raise InvalidMessage("'ts' is older than EVENT_MAX_AGE_S allows")
    categories, max_age_s = _parse_context(doc.get("context"))
    return UserEvent(event_id, user_id, item_id, etype, value_f, ts, categories, max_age_s)


def _parse_context(raw: object) -> tuple[tuple[str, ...] | None, float | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise InvalidMessage("'context' must be an object")
    categories = raw.get("categories")
    if categories is not None and (
        not isinstance(categories, list)
        or not 0 < len(categories) <= MAX_CONTEXT_CATEGORIES
        or not all(isinstance(c, str) and c for c in categories)
    ):
        raise InvalidMessage(
            f"'context.categories' must be a list of 1-{MAX_CONTEXT_CATEGORIES} non-empty strings"
        )
    max_age_s = raw.get("max_age_s")
    if max_age_s is not None and (
        isinstance(max_age_s, bool) or not isinstance(max_age_s, int | float) or max_age_s <= 0
    ):
        raise InvalidMessage("'context.max_age_s' must be a positive number of seconds")
    return (
        tuple(check_label(c, "context.categories") for c in categories)
        if categories is not None
        else None,
        float(max_age_s) if max_age_s is not None else None,
    )


def event_weight(event: UserEvent, weights: dict[str, float]) -> float:
    """Signed strength of an event: negative feedback pushes the user vector away."""
    base = weights.get(event.type, 0.0)
    if event.type == "rating" and event.value is not None:
        # Rating means watched: 3 stars is mildly positive, 5 is +1, 1 is -0.6, 2 is -0.2
        # (times the configured rating weight).
        return base * (event.value - 2.5) / 2.5
    return base
