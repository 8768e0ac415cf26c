"""Shared validation primitives for the topic contracts (pure, no I/O)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from datetime import datetime
from typing import Any

import orjson

MAX_ID_LENGTH = 256
MAX_LABEL_LENGTH = 256  # a category, a tag, a context category
MAX_UNKNOWN_FIELDS_BYTES = 4096  # fields outside the contract are tolerated up to this size
# C0/C1 controls (NUL included), zero-width and bidi marks: invisible in logs and UIs, and a
# way to make two ids look alike.
INVISIBLE_CLASS = r"\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
_INVISIBLE = re.compile(f"[{INVISIBLE_CLASS}]")


class InvalidMessage(ValueError):
    """A message breaks its topic's contract; the text says how (it goes to the DLQ)."""


def decode_json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise InvalidMessage("empty message value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"value is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidMessage(f"value must be a JSON object, got {type(doc).__name__}")
    # orjson keeps the last of duplicate keys; a second parse finds them, so that
    # {"image_url": "file://...", "image_url": "http://..."} is not read two ways (~3 µs).
    json.loads(value, object_pairs_hook=_no_duplicate_keys)
    return doc


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise InvalidMessage(f"duplicate key {duplicate[:64]!r}")
    return doc


def check_unknown_fields(doc: dict[str, Any], known: Collection[str]) -> None:
    """Fields outside the contract are allowed (producers evolve first) up to a size."""
    unknown = {k: v for k, v in doc.items() if k not in known}
    if unknown and len(orjson.dumps(unknown)) > MAX_UNKNOWN_FIELDS_BYTES:
        names = ", ".join(sorted(k[:32] for k in unknown)[:5])
        raise InvalidMessage(
            f"fields outside the contract ({names}) exceed {MAX_UNKNOWN_FIELDS_BYTES} bytes"
        )


def check_id(raw: str, name: str) -> str:
    if not raw.strip():
        raise InvalidMessage(f"'{name}' is required and must be a non-empty string")
    if len(raw) > MAX_ID_LENGTH:
        raise InvalidMessage(f"'{name}' is longer than {MAX_ID_LENGTH} characters")
    if _INVISIBLE.search(raw):
        raise InvalidMessage(f"'{name}' holds control, zero-width or bidi characters")
    return raw


def check_label(raw: object, name: str) -> str:
    """A category or tag: a non-empty visible string of at most MAX_LABEL_LENGTH."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidMessage(f"'{name}' entries must be non-empty strings")
    if len(raw) > MAX_LABEL_LENGTH:
        raise InvalidMessage(f"'{name}' entries are at most {MAX_LABEL_LENGTH} characters")
    if _INVISIBLE.search(raw):
        raise InvalidMessage(f"'{name}' holds control, zero-width or bidi characters")
    return raw.strip()


def require_id(doc: dict[str, Any], name: str) -> str:
    raw = doc.get(name)
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # numeric ids are common (MovieLens); keep them as strings
    if not isinstance(raw, str):
        raise InvalidMessage(f"'{name}' is required and must be a non-empty string")
    return check_id(raw, name)


# Epoch seconds below 1e11 (year 5138); milliseconds from 1e12 (Sep 2001) to 1e14.
_SECONDS_UP_TO = 1e11
_MILLIS_FROM, _MILLIS_UP_TO = 1e12, 1e14


def parse_timestamp(raw: object, name: str = "ts") -> float:
    """Epoch seconds (int/float; milliseconds are detected) or ISO 8601 with a zone."""
    if isinstance(raw, bool):
        raise InvalidMessage(f"'{name}' must be epoch seconds or ISO 8601, got a boolean")
    if isinstance(raw, int | float):
        ts = float(raw)
        if not math.isfinite(ts) or ts < 0:
            raise InvalidMessage(f"'{name}' must be a non-negative epoch time, got {ts!r}")
        if ts < _SECONDS_UP_TO:
            return ts
        # Kafka and JavaScript clients often send milliseconds. Between the two ranges the
        # unit cannot be told (year 9999 in seconds would read as 1978 in milliseconds).
        if _MILLIS_FROM <= ts < _MILLIS_UP_TO:
            return ts / 1000.0
        raise InvalidMessage(
            f"'{name}' must be epoch seconds before year 5138 or milliseconds after 2001, "
            f"got {ts:.0f}"
        )
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidMessage(f"'{name}' is not ISO 8601: {raw!r}") from None
        if parsed.tzinfo is None:
            raise InvalidMessage(f"'{name}' must carry a time zone (e.g. 'Z'): {raw!r}")
        return parsed.timestamp()
    raise InvalidMessage(f"'{name}' is required: epoch seconds or ISO 8601")
