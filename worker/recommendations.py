"""Where the `recommendations` message is built (pure).

Contract (key = user_id):
    {"user_id", "event_id", "event_ids", "items": [{"item_id", "score"}, ...],
     "model_version", "generated_at", "timings_ms": {stage: ms}, "strategy"}
`event_id` is the latest event answered; `event_ids` lists every event the message answers
(several when events of one user were coalesced inside a micro-batch). A push caused by a
new item (strategy "new_item") answers no event: `event_id` is null, `event_ids` empty, and
`trigger_item_ids` names the new items.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from worker.store import ScoredItem


def encode_recommendation(
    *,
    user_id: str,
    event_ids: Sequence[str],
    items: Sequence[ScoredItem],
    model_version: str,
    generated_at: float,
    timings_ms: dict[str, float],
    strategy: str,
    trigger_item_ids: Sequence[str] = (),
) -> bytes:
    extra = {"trigger_item_ids": list(trigger_item_ids)} if trigger_item_ids else {}
    return orjson.dumps(
        {
            "user_id": user_id,
            "event_id": event_ids[-1] if event_ids else None,
            "event_ids": list(event_ids),
            "items": [{"item_id": i.item_id, "score": round(i.score, 6)} for i in items],
            "model_version": model_version,
            "generated_at": generated_at,
            "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()},
            "strategy": strategy,
            **extra,
        }
    )
