"""Malformed messages by kind, for both input topics: every one must be dead-lettered once,
and nothing behind it may wait."""

from __future__ import annotations

import base64
import gzip
import io
import struct
from collections.abc import Callable
from typing import Any

import orjson
from PIL import Image

Message = tuple[str, bytes | None, bytes | None]  # kind, key, value
_BIG = 1_500_000  # over the producer's and the broker's default 1 MB message limit


def _event(n: int, item: str, **change: Any) -> dict[str, Any]:
    doc = {"event_id": f"bad-{n}", "user_id": f"pu{n % 50}", "item_id": item, "type": "click",
           "ts": 1.7e9 + n}  # fmt: skip
    doc.update(change)
    return {k: v for k, v in doc.items() if v is not _DROP}


_DROP = object()


def _json(doc: object) -> bytes:
    return orjson.dumps(doc)


def _png_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (7072, 7072)).save(buffer, format="PNG")  # 50 Mpx in a few KB
    return buffer.getvalue()


_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


def _png_truncated() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()[:120]


def _wav(sample_rate: int, frames: int, claimed: int) -> bytes:
    data = b"\x00\x01" * frames
    byte_rate = min(sample_rate * 2, 2**32 - 1)
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, byte_rate, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + claimed)
        + b"WAVE"
        + fmt
        + b"data"
        + struct.pack("<I", claimed)
        + data
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def event_kinds(item: str) -> dict[str, Callable[[int], tuple[bytes | None, bytes | None]]]:
    def user(n: int) -> bytes:
        return f"pu{n % 50}".encode()

    return {
        "not_json": lambda n: (user(n), b"{not json"),
        "empty": lambda n: (user(n), b""),
        # A tombstone with a key erases the user (valid); without one it is refused.
        "tombstone_empty_key": lambda n: (b"", None),
        "forget_without_ts": lambda n: (
            user(n),
            _json(_event(n, item, type="forget", item_id=_DROP, ts=_DROP)),
        ),
        "json_array": lambda n: (user(n), b"[1, 2]"),
        "json_string": lambda n: (user(n), b'"click"'),
        "json_number": lambda n: (user(n), b"42"),
        "missing_event_id": lambda n: (user(n), _json(_event(n, item, event_id=_DROP))),
        "missing_user_id": lambda n: (user(n), _json(_event(n, item, user_id=_DROP))),
        "missing_item_id": lambda n: (user(n), _json(_event(n, item, item_id=_DROP))),
        "empty_event_id": lambda n: (user(n), _json(_event(n, item, event_id=""))),
        "user_id_number": lambda n: (user(n), _json(_event(n, item, user_id=5))),
        "type_list": lambda n: (user(n), _json(_event(n, item, type=["click"]))),
        "type_object": lambda n: (user(n), _json(_event(n, item, type={"a": 1}))),
        "type_unknown": lambda n: (user(n), _json(_event(n, item, type="teleport"))),
        "type_number": lambda n: (user(n), _json(_event(n, item, type=3))),
        "ts_string": lambda n: (user(n), _json(_event(n, item, ts="yesterday"))),
        "ts_missing": lambda n: (user(n), _json(_event(n, item, ts=_DROP))),
        "ts_bool": lambda n: (user(n), _json(_event(n, item, ts=True))),
        "rating_value_string": lambda n: (
            user(n),
            _json(_event(n, item, type="rating", value="5")),
        ),
        "rating_out_of_range": lambda n: (user(n), _json(_event(n, item, type="rating", value=9))),
        "key_mismatch": lambda n: (b"someone-else", _json(_event(n, item))),
        "event_id_too_long": lambda n: (user(n), _json(_event(n, item, event_id="e" * 300))),
        "invalid_utf8": lambda n: (user(n), b'\xff\xfe{"event_id": "x"}'),
        "deep_nesting": lambda n: (user(n), b"[" * 100_000 + b"]" * 100_000),
        "context_not_object": lambda n: (user(n), _json(_event(n, item, context=5))),
        "context_categories_numbers": lambda n: (
            user(n),
            _json(_event(n, item, context={"categories": [1, 2]})),
        ),
        "oversize_event": lambda n: (user(n), _json(_event(n, item, item_id="i" * _BIG))),
    }


_PNG_BOMB = _png_bomb()
_GZIP_BOMB = gzip.compress(b"\0" * 20_000_000)  # 20 MB of zeros in ~20 KB


def item_kinds() -> dict[str, Callable[[int], tuple[bytes | None, bytes | None]]]:
    def key(n: int) -> bytes:
        return f"bad-item-{n}".encode()

    def doc(n: int, **fields: Any) -> bytes:
        return _json({"item_id": f"bad-item-{n}", **fields})

    return {
        "item_not_json": lambda n: (key(n), b"{not json"),
        "item_json_array": lambda n: (key(n), b"[]"),
        "item_missing_id": lambda n: (key(n), _json({"title": "x"})),
        "item_key_mismatch": lambda n: (b"other", doc(n, title="x")),
        "item_no_content": lambda n: (key(n), doc(n)),
        "image_b64_not_base64": lambda n: (key(n), doc(n, image_b64="!!! not base64 !!!")),
        "image_b64_garbage": lambda n: (key(n), doc(n, image_b64=_b64(b"\x00garbage" * 50))),
        "image_truncated_png": lambda n: (key(n), doc(n, image_b64=_b64(_png_truncated()))),
        "image_url_unparseable": lambda n: (key(n), doc(n, image_url="http://[::1")),
        "image_url_file": lambda n: (key(n), doc(n, image_url="file:///etc/passwd")),
        "image_url_refused": lambda n: (key(n), doc(n, image_url="http://127.0.0.1:9/x.png")),
        "audio_truncated_wav": lambda n: (key(n), doc(n, audio_b64=_b64(_wav(16000, 10, 10**6)))),
        "audio_extreme_rate": lambda n: (
            key(n),
            doc(n, audio_b64=_b64(_wav(4_000_000_000, 400, 800))),
        ),
        "image_png_bomb": lambda n: (key(n), doc(n, image_b64=_b64(_PNG_BOMB))),
        "image_eps": lambda n: (key(n), doc(n, image_b64=_b64(_EPS))),
        "image_gzip_bomb": lambda n: (key(n), doc(n, image_b64=_b64(_GZIP_BOMB))),
        "audio_gzip_bomb": lambda n: (key(n), doc(n, audio_b64=_b64(_GZIP_BOMB))),
        "tags_not_list": lambda n: (key(n), doc(n, title="x", tags="a,b")),
        "tags_numbers": lambda n: (key(n), doc(n, title="x", tags=[1, 2])),
        "title_not_string": lambda n: (key(n), doc(n, title=5)),
        "text_too_long": lambda n: (key(n), doc(n, text="t" * 30_000)),
        "both_image_forms": lambda n: (
            key(n),
            doc(n, image_b64=_b64(b"x"), image_url="http://127.0.0.1:9/x.png"),
        ),
        "popularity_negative": lambda n: (key(n), doc(n, title="x", popularity=-1)),
        "created_at_bad": lambda n: (key(n), doc(n, title="x", created_at="tomorrow")),
        "tombstone_empty_key": lambda n: (b"", None),
        "oversize_item": lambda n: (key(n), doc(n, text="t" * _BIG)),
    }


def _cycle(
    kinds: dict[str, Callable[[int], tuple[bytes | None, bytes | None]]], count: int
) -> list[Message]:
    names = sorted(kinds)
    out: list[Message] = []
    for n in range(count):
        name = names[n % len(names)]
        if name.startswith("oversize") and n >= len(names) * 3:
            name = names[(n + 1) % len(names)]  # a few oversize ones are enough
        key, value = kinds[name](n)
        out.append((name, key, value))
    return out


def poison_events(count: int, item_ids: list[str]) -> list[Message]:
    return _cycle(event_kinds(item_ids[0]), count)


def poison_items(count: int) -> list[Message]:
    return _cycle(item_kinds(), count)
