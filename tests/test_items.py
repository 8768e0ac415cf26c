import base64

import orjson
import pytest

from worker.items import ItemDelete, ItemUpsert, item_text, parse_item
from worker.validation import InvalidMessage


def _item(**fields: object) -> bytes:
    return orjson.dumps({"item_id": "i1", **fields})


def test_text_item_parses_with_defaults() -> None:
    item = parse_item(b"i1", _item(title="Toy Story", tags=["Animation"]), received_at=5.0)
    assert isinstance(item, ItemUpsert)
    assert item.title == "Toy Story" and item.tags == ("Animation",)
    assert item.created_at == 5.0  # falls back to the message timestamp


def test_image_only_item_decodes_base64() -> None:
    raw = b"\x89PNG fake bytes are decoded later by Triton"
    item = parse_item(None, _item(image_b64=base64.b64encode(raw).decode()), received_at=0)
    assert isinstance(item, ItemUpsert) and item.image == raw
    assert item_text(item) is None


def test_null_value_is_a_delete_of_the_keyed_item() -> None:
    assert parse_item(b"i9", None, received_at=0) == ItemDelete("i9")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, None, "tombstone"),
        (b"i1", _item(), "at least one content field"),
        (b"i1", _item(category="Drama"), "at least one content field"),
        (b"i1", _item(image_b64="***"), "not valid base64"),
        (b"i1", _item(image_url="ftp://x/y.png"), "http"),
        (b"i1", _item(title="t", tags="Drama"), "list of strings"),
        (b"i1", _item(title=3), "must be a string"),
        (b"i2", _item(title="t"), "key must equal item_id"),
        (b"i1", _item(title="t", created_at="soon"), "ISO 8601"),
        (b"i1", _item(title="t", popularity=-1), "non-negative"),
    ],
)
def test_invalid_items_are_rejected_with_a_reason(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        parse_item(key, value, received_at=0)


def test_item_text_joins_title_body_category_and_tags() -> None:
    item = parse_item(
        b"i1",
        _item(title="Heat", text="A heist film.", category="Crime", tags=["Action", "Thriller"]),
        received_at=0,
    )
    assert isinstance(item, ItemUpsert)
    assert item_text(item) == "Heat. A heist film. Category: Crime. Tags: Action, Thriller"


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://", "https://host:notaport/x.png", "ftp://h/x"]
)
def test_a_media_url_that_does_not_parse_as_http_with_a_host_is_rejected(url: str) -> None:
    with pytest.raises(InvalidMessage, match="http"):
        parse_item(b"x", orjson.dumps({"item_id": "x", "image_url": url}), received_at=1.7e9)


def test_duplicate_keys_are_refused_so_a_message_cannot_be_read_two_ways() -> None:
    value = b'{"item_id": "x", "image_url": "file:///etc/passwd", "image_url": "http://a/b.png"}'
    with pytest.raises(InvalidMessage, match="duplicate key 'image_url'"):
        parse_item(b"x", value, received_at=1.7e9)


@pytest.mark.parametrize("item_id", ["a\x00b", "a\u202eb", "a\u200bb", "line\nbreak"])
def test_ids_with_control_zero_width_or_bidi_characters_are_refused(item_id: str) -> None:
    with pytest.raises(InvalidMessage, match="control, zero-width or bidi"):
        parse_item(item_id.encode(), _item(item_id=item_id, title="t"), received_at=1.7e9)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": "t", "blob": "x" * 1_500_000}, "outside the contract"),
        ({"title": "t", "category": "c" * 200_000}, "256 characters"),
        ({"title": "t", "tags": ["t" * 300]}, "256 characters"),
        ({"title": "t" * 1001}, "longer than 1000"),
    ],
)
def test_every_field_has_a_length_limit(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidMessage, match=message):
        parse_item(b"i1", _item(**fields), received_at=1.7e9)


def test_a_small_unknown_field_is_tolerated() -> None:
    assert isinstance(parse_item(b"i1", _item(title="t", note="hi"), received_at=1.7e9), ItemUpsert)


@pytest.mark.parametrize("key", [b"\xff\xfe", b"a" * 300, b"a\x00"])
def test_a_tombstone_key_is_checked_like_an_id(key: bytes) -> None:
    with pytest.raises(InvalidMessage):
        parse_item(key, None, received_at=1.7e9)
