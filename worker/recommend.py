"""The user-events path for one micro-batch.

parse -> load user states (1 store call) -> fold events -> load history vectors (1 call)
-> user vectors (1 Triton call) -> retrieval (1 batched Qdrant query) -> save states (1 call)
-> one recommendation per user (coalesced) or per event round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.candidates import final_candidates, search_request
from worker.events import UserEvent, parse_event
from worker.recommendations import encode_recommendation
from worker.records import BatchResult, DeadLetter, OutMessage, RawMessage
from worker.settings import Settings
from worker.store import ScoredItem, UserState, VectorStore
from worker.triton import TritonClient
from worker.user_state import apply_events
from worker.user_vector import make_user_vectors
from worker.validation import InvalidMessage


@dataclass(slots=True)
class RecommendResult(BatchResult):
    event_timestamps: list[float] | None = None  # of every answered event, for e2e latency


def event_rounds(
    events: Sequence[UserEvent], *, coalesce: bool
) -> list[dict[str, list[UserEvent]]]:
    """Group events by user. Coalesced: one round, all of a user's events together.

    Otherwise round r holds each user's r-th event, so every event gets its own answer that
    reflects exactly the events before it, while each round is still one batched pass.
    """
    per_user: dict[str, list[UserEvent]] = {}
    for event in events:
        per_user.setdefault(event.user_id, []).append(event)
    if coalesce:
        return [per_user] if per_user else []
    depth = max((len(v) for v in per_user.values()), default=0)
    return [{u: [ev[r]] for u, ev in per_user.items() if len(ev) > r} for r in range(depth)]


async def recommend_batch(
    messages: Sequence[RawMessage],
    *,
    triton: TritonClient,
    store: VectorStore,
    settings: Settings,
    model_version: str,
    clock: Callable[[], float] = time.time,
) -> RecommendResult:
    result = RecommendResult(event_timestamps=[])
    started = time.perf_counter()
    events: list[UserEvent] = []
    for msg in messages:
        try:
            events.append(parse_event(msg.key, msg.value))
        except InvalidMessage as exc:
            result.dead_letters.append(DeadLetter(msg, "decode", str(exc)))
    stages = result.stage_seconds
    stages["decode"] = time.perf_counter() - started

    for round_events in event_rounds(events, coalesce=settings.coalesce_events):
        await _recommend_round(round_events, result, triton, store, settings, model_version, clock)
    return result


async def _timed_save(
    store: VectorStore, states: list[UserState], stages: dict[str, float]
) -> None:
    started = time.perf_counter()
    await store.upsert_users(states)
    stages["save"] = stages.get("save", 0.0) + (time.perf_counter() - started)


async def _recommend_round(
    by_user: dict[str, list[UserEvent]],
    result: RecommendResult,
    triton: TritonClient,
    store: VectorStore,
    settings: Settings,
    model_version: str,
    clock: Callable[[], float],
) -> None:
    stages = result.stage_seconds
    t0 = time.perf_counter()
    user_ids = list(by_user)
    stored = await store.get_users(user_ids)
    states = [
        apply_events(
            stored.get(uid) or UserState(user_id=uid),
            by_user[uid],
            weights=settings.event_weights,
            history_window=settings.history_window,
            seen_window=settings.seen_window,
        )
        for uid in user_ids
    ]
    history_ids = sorted({i.item_id for s in states for i in s.history})
    item_vectors = await store.get_item_vectors(history_ids)
    t1 = time.perf_counter()
    stages["state"] = stages.get("state", 0.0) + (t1 - t0)

    vectors = await make_user_vectors(triton, states, item_vectors, window=settings.history_window)
    t2 = time.perf_counter()
    stages["triton"] = stages.get("triton", 0.0) + (t2 - t1)

    wanted = [i for i, v in enumerate(vectors) if v is not None]
    # Over-fetch a little: the final filter may still drop seen items beyond the filter's reach.
    requests = [
        search_request(vectors[i], states[i].seen, k=settings.recommendations_k + 5)  # type: ignore[arg-type]
        for i in wanted
    ]
    found = await store.search_items(requests) if requests else []
    t3 = time.perf_counter()
    stages["qdrant"] = stages.get("qdrant", 0.0) + (t3 - t2)

    for i, vector in enumerate(vectors):
        if vector is not None:
            states[i].vector = vector
    # Saved while the outputs are produced; the store's single thread runs calls in
    # submission order, so a later read (next round or batch) still sees this write.
    result.pending_saves.append(asyncio.ensure_future(_timed_save(store, states, stages)))

    found_by_row: dict[int, list[ScoredItem]] = dict(zip(wanted, found, strict=True))
    timings_ms = {k: v * 1000.0 for k, v in stages.items()}
    now = clock()
    for row, state in enumerate(states):
        answered = by_user[state.user_id]
        items = final_candidates(found_by_row.get(row, []), state.seen, settings.recommendations_k)
        result.outputs.append(
            OutMessage(
                topic=settings.recommendations_topic,
                key=state.user_id.encode(),
                value=encode_recommendation(
                    user_id=state.user_id,
                    event_ids=[e.event_id for e in answered],
                    items=items,
                    model_version=model_version,
                    generated_at=now,
                    timings_ms=timings_ms,
                    strategy="user_vector" if row in found_by_row else "no_history",
                ),
            )
        )
        assert result.event_timestamps is not None
        result.event_timestamps.extend(e.ts for e in answered)
