"""Point layout shared by the Edge and server stores: vector name, payload <-> dataclasses.

Both implementations store exactly this layout, so a deployment can move between them (e.g. by
snapshot) without a migration.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from worker.rules import DEFAULT_RULES, ItemRules, rules_from_payload, rules_payload
from worker.store.base import Interaction, ItemRecord, ScoredItem, UserState, point_id

# Named (not default) vector: a user point may exist before its vector does, and only named
# vectors may be absent from a point.
VECTOR_NAME = "embedding"

# Indexed payload fields of the items collection (filters in search_items).
CATEGORY_FIELD = "category"
CREATED_AT_FIELD = "created_at"
# Indexed payload field of the users collection (new-item fan-out per worker).
PARTITION_FIELD = "partition"
# The item space the user's vector was made in: pushes compare it only with items of that space.
ITEM_SPACE_FIELD = "item_space"

# Business rules (worker/rules.py): searches leave out unavailable and expired items.
BLOCKED_FROM_FIELD = "blocked_from"
PIN_SLOT_FIELD = "pin_slot"
RULE_OVERRIDE_FIELD = "rule_override"
OWN_RULES_FIELD = "own_rules"

# The payload a search hit needs to become a ScoredItem; titles and versions stay on disk.
SCORED_FIELDS = [
    *("item_id", "category", "tags", "created_at", "popularity"),
    *("available", "expires_at", "boost", "pin_slot", "pin_category"),
]


def item_point_ids(item_ids: Sequence[str]) -> dict[int, str]:
    """Derived point id -> item id (duplicates collapse)."""
    return {point_id("item", item_id): item_id for item_id in item_ids}


def user_point_ids(user_ids: Sequence[str]) -> dict[int, str]:
    """Derived point id -> user id (duplicates collapse)."""
    return {point_id("user", user_id): user_id for user_id in user_ids}


def vector_list(vector: np.ndarray) -> list[float]:
    return np.asarray(vector, dtype=np.float32).tolist()


def vector_array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def named_vector(vectors: object) -> np.ndarray | None:
    """The store's vector out of a record's vector field, or None when the point has none."""
    values = named_values(vectors)
    return None if values is None else vector_array(values)


def named_values(vectors: object) -> Sequence[float] | None:
    """`named_vector`'s values as the engine gave them (a list of floats)."""
    if not isinstance(vectors, Mapping):
        return None
    values: Sequence[float] | None = vectors.get(VECTOR_NAME)
    return values


def item_payload(item: ItemRecord) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "category": item.category,
        "tags": list(item.tags),
        "created_at": float(item.created_at),
        "popularity": float(item.popularity),
        "model_version": item.model_version,
        **rules_payload(item.rules, overridden=item.rules != item.own_rules),
        # JSON, read only when an item-rules message comes or goes (see worker/rules.py).
        OWN_RULES_FIELD: orjson.dumps(rules_payload(item.own_rules)).decode(),
    }


def own_rules_of(payload: Mapping[str, Any]) -> ItemRules:
    raw = payload.get(OWN_RULES_FIELD)
    return rules_from_payload(orjson.loads(raw)) if raw else DEFAULT_RULES


def scored_item(
    payload: Mapping[str, Any], score: float, vector: np.ndarray | None = None
) -> ScoredItem:
    return ScoredItem(
        item_id=str(payload["item_id"]),
        score=float(score),
        category=payload.get("category"),
        tags=tuple(payload.get("tags") or ()),
        created_at=float(payload.get("created_at") or 0.0),
        popularity=float(payload.get("popularity") or 0.0),
        vector=vector,
        rules=rules_from_payload(payload),
    )


def query_limit(limit: int) -> int:
    """Engines reject limit 0 (the local client) or answer oddly; ask for 1 and trim instead."""
    return max(limit, 1)


def user_payload(user: UserState) -> dict[str, Any]:
    # Everything no search filters on or returns travels as one orjson string: the engines'
    # Python bindings convert a payload value by value (measured: ~3.7 ms per user with 50
    # events and 300 seen ids as lists, against ~0.03 ms for the string), and even a plain
    # value costs (a failed try of each type before its own): with `updated_at` and `latest`
    # as fields of their own, a user's upsert into the embedded store took 363k instructions
    # against 308k with them in the string.
    state = {
        # Plain tuples in Interaction's field order (orjson refuses the named tuple itself):
        # half the cost of building a list per event.
        "history": list(map(tuple, user.history)),
        "seen": list(user.seen),
        "event_keys": base64.b64encode(user.event_keys).decode(),
        "updated_at": float(user.updated_at),
        "latest": user.latest,
    }
    return {
        "user_id": user.user_id,  # search hits name their users by it
        "state": orjson.dumps(state).decode(),
        PARTITION_FIELD: int(user.partition),  # filtered on (indexed)
        ITEM_SPACE_FIELD: user.item_space,  # filtered on (indexed)
    }


def user_state(payload: Mapping[str, Any], vector: np.ndarray | None) -> UserState:
    state = orjson.loads(payload.get("state") or "{}")
    # `updated_at` and `latest` as payload fields: written by earlier releases.
    return UserState(
        user_id=str(payload["user_id"]),
        history=list(map(Interaction._make, state.get("history", ()))),
        seen=state.get("seen", []),
        vector=vector,
        updated_at=float(state.get("updated_at", payload.get("updated_at")) or 0.0),
        event_keys=base64.b64decode(state.get("event_keys", "")),
        partition=int(payload.get(PARTITION_FIELD, -1)),
        item_space=str(payload.get(ITEM_SPACE_FIELD) or ""),
        latest=str(state.get("latest", payload.get("latest")) or ""),
    )
