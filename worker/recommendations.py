"""Where the `recommendations` message is built (pure).

Contract (key = user_id):
    {"user_id", "event_id", "event_ids", "items": [{"item_id", "score"}, ...],
     "model_version", "generated_at", "timings_ms": {stage: ms}, "strategy"}
`event_id` is the latest event answered; `event_ids` lists every event the message answers
(several when events of one user were coalesced inside a micro-batch).
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
) -> bytes:
    return orjson.dumps(
        {
            "user_id": user_id,
            "event_id": event_ids[-1],
            "event_ids": list(event_ids),
            "items": [{"item_id": i.item_id, "score": round(i.score, 6)} for i in items],
            "model_version": model_version,
            "generated_at": generated_at,
            "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()},
            "strategy": strategy,
        }
    )
