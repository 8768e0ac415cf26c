"""Where the `recommendations` message is built, and the copy of it the read API serves
(pure).

Contract (key = user_id):
    {"user_id", "event_id", "event_ids",
     "items": [{"item_id", "score", "category", "reasons": [{"kind", ...}, ...]}, ...],
     "model_version", "variant", "generated_at", "timings_ms": {stage: ms}, "strategy"}
`event_id` is the latest event answered; `event_ids` lists every event the message answers
(several when events of one user were coalesced inside a micro-batch). A push caused by a
new item (strategy "new_item") answers no event: `event_id` is null, `event_ids` empty, and
`trigger_item_ids` names the new items. `reasons` say why each item is listed (see
worker/reasons.py); `variant` names the user's A/B variant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from worker.store import ScoredItem

Reason = Mapping[str, str]


def recommendation_doc(
    *,
    user_id: str,
    event_ids: Sequence[str],
    items: Sequence[ScoredItem],
    model_version: str,
    variant: str,
    generated_at: float,
    strategy: str,
    reasons: Sequence[Sequence[Reason]] | None = None,
    trigger_item_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """The message without its timings (the read API stores and serves this)."""
    listed: list[dict[str, Any]] = [
        {"item_id": i.item_id, "score": round(i.score, 6), "category": i.category} for i in items
    ]
    if reasons is not None:
        for entry, why in zip(listed, reasons, strict=True):
            entry["reasons"] = [dict(r) for r in why]
    extra = {"trigger_item_ids": list(trigger_item_ids)} if trigger_item_ids else {}
    return {
        "user_id": user_id,
        "event_id": event_ids[-1] if event_ids else None,
        "event_ids": list(event_ids),
        "items": listed,
        "model_version": model_version,
        "variant": variant,
        "generated_at": generated_at,
        "strategy": strategy,
        **extra,
    }


def encode_recommendation(doc: Mapping[str, Any], timings_ms: Mapping[str, float]) -> bytes:
    return orjson.dumps({**doc, "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()}})


def stored_list(doc: Mapping[str, Any]) -> str:
    """The copy kept in the user's state for `GET /recommendations/{user_id}` (no event
    ids: a coalesced batch may list many)."""
    return orjson.dumps({k: v for k, v in doc.items() if k != "event_ids"}).decode()
