"""Where an `items` message is parsed and validated (pure, no I/O).

Contract (key = item_id):
    {"item_id", "title", "text", "image_b64" | "image_url", "audio_b64" | "audio_url",
     "category", "tags": [...], "created_at",
     "available", "expires_at", "boost", "pinned"}  (business rules: worker/rules.py)
Only item_id and one content field (title, text, image, audio) are required.
A null value (a Kafka tombstone) deletes the item named by the key.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import urlparse

from worker.rules import DEFAULT_RULES, RULE_FIELDS, ItemRules, own_rules
from worker.validation import (
    MAX_LABEL_LENGTH,
    InvalidMessage,
    check_id,
    check_label,
    check_unknown_fields,
    decode_json_object,
    parse_timestamp,
    require_id,
)

MAX_MEDIA_BYTES = 16 * 1024 * 1024
MAX_TEXT_CHARS = 20_000
MAX_TAGS = 64
MAX_TITLE_CHARS = 1000
FIELDS = {
    "item_id", "title", "text", "image_b64", "image_url", "audio_b64", "audio_url",
    "category", "tags", "created_at", "popularity", *RULE_FIELDS,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ItemUpsert:
    item_id: str
    title: str | None
    text: str | None
    image: bytes | None
    image_url: str | None
    audio: bytes | None
    audio_url: str | None
    category: str | None
    tags: tuple[str, ...]
    created_at: float
    popularity: float
    rules: ItemRules = DEFAULT_RULES  # the item's own business rules (worker/rules.py)

    @property
    def has_content(self) -> bool:
        return any((self.title, self.text, self.image, self.image_url, self.audio, self.audio_url))


@dataclass(frozen=True, slots=True)
class ItemDelete:
    item_id: str


def parse_item(
    key: bytes | None, value: bytes | None, *, received_at: float
) -> ItemUpsert | ItemDelete:
    """Validate one item message; raise InvalidMessage with a reason for the DLQ."""
    if value is None:
        if not key:
            raise InvalidMessage("a tombstone (null value) needs the item_id as its key")
        try:
            return ItemDelete(check_id(key.decode("utf-8"), "key"))
        except UnicodeDecodeError:
            raise InvalidMessage("a tombstone's key must be UTF-8") from None
    doc = decode_json_object(value)
    check_unknown_fields(doc, FIELDS)
    item_id = require_id(doc, "item_id")
    if key is not None and key.decode("utf-8", "replace") != item_id:
        raise InvalidMessage("message key must equal item_id")
    title = _optional_text(doc, "title", MAX_TITLE_CHARS)
    text = _optional_text(doc, "text")
    image = _optional_b64(doc, "image_b64")
    audio = _optional_b64(doc, "audio_b64")
    image_url = _optional_url(doc, "image_url")
    audio_url = _optional_url(doc, "audio_url")
    if image is not None and image_url is not None:
        raise InvalidMessage("give either 'image_b64' or 'image_url', not both")
    if audio is not None and audio_url is not None:
        raise InvalidMessage("give either 'audio_b64' or 'audio_url', not both")
    category = _optional_text(doc, "category", MAX_LABEL_LENGTH)
    if category is not None:
        category = check_label(category, "category")
    tags = _tags(doc.get("tags"))
    created_raw = doc.get("created_at")
    created_at = received_at if created_raw is None else parse_timestamp(created_raw, "created_at")
    popularity = doc.get("popularity", 0.0)
    if isinstance(popularity, bool) or not isinstance(popularity, int | float) or popularity < 0:
        raise InvalidMessage("'popularity' must be a non-negative number")
    item = ItemUpsert(
        item_id=item_id,
        title=title,
        text=text,
        image=image,
        image_url=image_url,
        audio=audio,
        audio_url=audio_url,
        category=category,
        tags=tags,
        created_at=created_at,
        popularity=float(popularity),
        rules=own_rules(doc),
    )
    if not item.has_content:
        raise InvalidMessage(
            "an item needs at least one content field: title, text, image_b64/image_url "
            "or audio_b64/audio_url"
        )
    return item


def item_text(item: ItemUpsert) -> str | None:
    """The text the text encoder sees: title, body, category and tags in one string."""
    parts = [p for p in (item.title, item.text) if p]
    if item.category and item.category not in item.tags:
        parts.append(f"Category: {item.category}")
    if item.tags:
        parts.append("Tags: " + ", ".join(item.tags))
    # Category or tags alone say too little to stand in for content.
    if not item.title and not item.text:
        return None
    return ". ".join(p.rstrip(". ") for p in parts)


def _optional_text(doc: dict[str, object], name: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    raw = doc.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidMessage(f"'{name}' must be a string")
    raw = raw.strip()
    if len(raw) > limit:
        raise InvalidMessage(f"'{name}' is longer than {limit} characters")
    return raw or None


def _optional_b64(doc: dict[str, object], name: str) -> bytes | None:
    raw = doc.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidMessage(f"'{name}' must be a base64 string")
    if len(raw) > MAX_MEDIA_BYTES * 4 // 3 + 4:
        raise InvalidMessage(f"'{name}' is larger than {MAX_MEDIA_BYTES} bytes")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage(f"'{name}' is not valid base64") from None
    if not data:
        raise InvalidMessage(f"'{name}' is empty")
    return data


def _optional_url(doc: dict[str, object], name: str) -> str | None:
    raw = doc.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidMessage(f"'{name}' must be an http(s) URL")
    try:
        url = urlparse(raw)
        valid = url.scheme in ("http", "https") and bool(url.hostname)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise InvalidMessage(f"'{name}' must be an http(s) URL with a host")
    return raw


def _tags(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise InvalidMessage("'tags' must be a list of strings")
    if len(raw) > MAX_TAGS:
        raise InvalidMessage(f"'tags' holds more than {MAX_TAGS} entries")
    return tuple(check_label(t, "tags") for t in raw if t.strip())
