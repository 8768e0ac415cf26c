"""Changelog records <-> bytes: item vectors, user states, signal deltas (pure).

Item and user records are framed as a 4-byte length, the store's own payload (orjson, the
layout of `store.payload`) and the raw float32 vector, so materialising one costs no float
parsing and a store written from the changelog equals the one written directly.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from worker.records import SignalUpdates
from worker.rules import rules_from_payload
from worker.store.base import ItemRecord, UserState
from worker.store.payload import item_payload, own_rules_of, user_payload, user_state

_LENGTH = struct.Struct("<I")


class ChangelogDecodeError(ValueError):
    """A changelog record this version cannot read (skipped and counted, never fatal)."""


def _frame(meta: dict[str, Any], vector: np.ndarray | None) -> bytes:
    head = orjson.dumps(meta)
    body = b"" if vector is None else np.asarray(vector, dtype="<f4").tobytes()
    return _LENGTH.pack(len(head)) + head + body


def _unframe(value: bytes) -> tuple[dict[str, Any], np.ndarray | None]:
    try:
        (length,) = _LENGTH.unpack_from(value)
        meta = orjson.loads(value[4 : 4 + length])
        body = value[4 + length :]
    except (struct.error, orjson.JSONDecodeError) as exc:
        raise ChangelogDecodeError(f"unreadable changelog record: {exc}") from exc
    if len(body) % 4 or not isinstance(meta, dict):
        raise ChangelogDecodeError("unreadable changelog record: bad framing")
    vector = np.frombuffer(body, dtype="<f4").astype(np.float32) if body else None
    return meta, vector


def encode_item(item: ItemRecord) -> bytes:
    return _frame(item_payload(item), item.vector)


def decode_item(value: bytes) -> ItemRecord:
    meta, vector = _unframe(value)
    if vector is None or "item_id" not in meta:
        raise ChangelogDecodeError("item-vectors record without an item id or a vector")
    return ItemRecord(
        item_id=str(meta["item_id"]),
        vector=vector,
        title=meta.get("title"),
        category=meta.get("category"),
        tags=tuple(meta.get("tags") or ()),
        created_at=float(meta.get("created_at") or 0.0),
        popularity=float(meta.get("popularity") or 0.0),
        model_version=str(meta.get("model_version") or ""),
        rules=rules_from_payload(meta),
        own_rules=own_rules_of(meta),
    )


def encode_user(state: UserState) -> bytes:
    return _frame(user_payload(state), state.vector)


def decode_user(value: bytes) -> UserState:
    meta, vector = _unframe(value)
    if "user_id" not in meta:
        raise ChangelogDecodeError("user-state record without a user id")
    try:
        return user_state(meta, vector)
    except (KeyError, TypeError, ValueError) as exc:
        raise ChangelogDecodeError(f"unreadable user state: {exc}") from exc


def encode_delta(batch_id: str, updates: SignalUpdates) -> bytes:
    """One batch's trending and co-visitation updates (push limits stay with the user)."""
    return orjson.dumps(
        {"batch": batch_id, "trending": updates.trending, "covisits": updates.covisits}
    )


def decode_delta(value: bytes) -> tuple[str, SignalUpdates]:
    try:
        doc = orjson.loads(value)
        trending: Sequence[Sequence[Any]] = doc["trending"]
        covisits: Sequence[Sequence[Any]] = doc["covisits"]
        updates = SignalUpdates(
            trending=[(str(item), float(ts)) for item, ts in trending],
            covisits=[(str(item), [str(e) for e in earlier]) for item, earlier in covisits],
        )
        return str(doc["batch"]), updates
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ChangelogDecodeError(f"unreadable signal delta: {exc}") from exc
