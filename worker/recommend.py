"""The user-events path for one micro-batch.

parse -> trending counts -> load user states (1 store call) -> co-visitation counts -> fold
events -> fetch history, trending and co-visited items (1 call) -> user vectors (1 Triton
call) -> retrieval (1 batched Qdrant query) -> save states (1 call) -> rank (pure:
worker.ranking) -> one recommendation per user (coalesced) or per event round.

A user whose history has no catalogue item yet (a brand-new user, or items not indexed yet)
gets the trending items: strategy "trending" instead of "user_vector".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from worker.candidates import (
    CandidateFilter,
    candidate_filter,
    catalogue_items,
    merge_candidates,
    scored_against,
    scored_per_query,
    search_request,
)
from worker.covisitation import CoVisitation, top_unseen
from worker.events import UserEvent, parse_event
from worker.ranking import RankingParams, mmr, shortlist_many
from worker.recommendations import encode_recommendation
from worker.records import BatchResult, DeadLetter, OutMessage, RawMessage
from worker.settings import Settings
from worker.store import ScoredItem, UserState, VectorStore
from worker.trending import Trending, counts_as_consumption
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


def negatives_of(state: UserState, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
    """[m, D] vectors of the catalogue items in the user's history with a negative weight
    (dislikes, skips, low ratings): the ranking keeps their look-alikes down."""
    rows = [vectors[i.item_id] for i in state.history if i.weight < 0 and i.item_id in vectors]
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def consumed_items(state: UserState, n: int) -> list[str]:
    """The user's last n consumed items (skips and dislikes are not consumption)."""
    return [i.item_id for i in state.history if counts_as_consumption(i.type)][-n:]


def count_covisits(
    covisitation: CoVisitation, before: UserState, events: Sequence[UserEvent], history: int
) -> None:
    """Pair each new consumption with the user's consumed items before it (an event the
    state already holds is a redelivery and is not counted again)."""
    known = {i.event_id for i in before.history if i.event_id}
    earlier = consumed_items(before, history)
    for event in sorted(events, key=lambda e: e.ts):
        if event.event_id in known or not counts_as_consumption(event.type):
            continue
        covisitation.add(event.item_id, earlier[-history:])
        earlier.append(event.item_id)


def shortlists_for_users(
    found: Sequence[Sequence[ScoredItem]],
    extra: Sequence[Sequence[ScoredItem]],
    states: Sequence[UserState],
    trending: Mapping[str, float],
    constraints: Sequence[CandidateFilter],
    now: float,
    params: RankingParams,
    negatives: Sequence[np.ndarray | None] | None = None,
    covisited: Sequence[Mapping[str, float] | None] | None = None,
) -> list[list[ScoredItem]]:
    """Per user: search hits plus extra candidates (trending and co-visited items, scored
    against this user: see `scored_against`) -> the user's scored shortlist, scored for the
    whole batch at once; `ranking.mmr` then makes the final k."""
    merged = [
        merge_candidates(hits, more, state.seen, allowed)
        for hits, more, state, allowed in zip(found, extra, states, constraints, strict=True)
    ]
    return shortlist_many(
        merged,
        trending,
        history_lengths=[len(state.history) for state in states],
        now=now,
        params=params,
        negatives=negatives,
        covisited=covisited,
    )


async def recommend_batch(
    messages: Sequence[RawMessage],
    *,
    triton: TritonClient,
    store: VectorStore,
    settings: Settings,
    model_version: str,
    trending: Trending,
    covisitation: CoVisitation,
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

    # Each round's states carry over to the next: its save may not have reached the store
    # yet, and reading the store back would drop that round's events from the history.
    carried: dict[str, UserState] = {}
    for round_events in event_rounds(events, coalesce=settings.coalesce_events):
        await _recommend_round(
            round_events,
            result,
            triton,
            store,
            settings,
            model_version,
            (trending, covisitation),
            carried,
            clock,
        )
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
    signals: tuple[Trending, CoVisitation],
    carried: dict[str, UserState],
    clock: Callable[[], float],
) -> None:
    stages = result.stage_seconds
    trending, covisitation = signals
    use_covisits = settings.covisitation_weight > 0
    t0 = time.perf_counter()
    for user_events in by_user.values():
        for event in user_events:
            if counts_as_consumption(event.type):
                trending.add(event.item_id, event.ts)
    popular = trending.top(settings.trending_size)
    user_ids = list(by_user)
    unread = [uid for uid in user_ids if uid not in carried]
    stored = await store.get_users(unread) if unread else {}
    stored.update((uid, carried[uid]) for uid in user_ids if uid in carried)
    if use_covisits:
        for uid in user_ids:
            before = stored.get(uid) or UserState(user_id=uid)
            count_covisits(covisitation, before, by_user[uid], settings.covisitation_history)
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
    carried.update((state.user_id, state) for state in states)
    covisited = (
        covisitation.scores_many([consumed_items(s, settings.covisitation_history) for s in states])
        if use_covisits
        else [{} for _ in states]
    )
    covisited_ids = [
        top_unseen(scores, s.seen, settings.covisitation_candidates)
        for scores, s in zip(covisited, states, strict=True)
    ]
    wanted_ids = {i.item_id for s in states for i in s.history} | set(popular)
    wanted_ids.update(i for ids in covisited_ids for i in ids)
    fetched = await store.get_items(sorted(wanted_ids))
    item_vectors = {k: v.vector for k, v in fetched.items() if v.vector is not None}
    t1 = time.perf_counter()
    stages["state"] = stages.get("state", 0.0) + (t1 - t0)

    vectors = await make_user_vectors(triton, states, item_vectors, window=settings.history_window)
    t2 = time.perf_counter()
    stages["triton"] = stages.get("triton", 0.0) + (t2 - t1)

    # Event time, not the wall clock: freshness and windows then mean the same in a replay.
    now = max(e.ts for evs in by_user.values() for e in evs)
    constraints = [candidate_filter(settings, by_user[s.user_id], now) for s in states]
    # Rows whose constraints leave no category (an empty intersection) need no search.
    searched = [
        row
        for row, vector in enumerate(vectors)
        if vector is not None and constraints[row].categories != ()
    ]
    requests = [
        search_request(
            vectors[row],  # type: ignore[arg-type]
            states[row].seen,
            k=settings.candidate_pool,
            constraints=constraints[row],
        )
        for row in searched
    ]
    found = await store.search_items(requests) if requests else []
    t3 = time.perf_counter()
    stages["qdrant"] = stages.get("qdrant", 0.0) + (t3 - t2)

    for state, vector in zip(states, vectors, strict=True):
        if vector is not None:
            state.vector = vector
    # Saved while the outputs are produced; the store's single thread runs calls in
    # submission order, so a later read (next round or batch) still sees this write.
    result.pending_saves.append(asyncio.ensure_future(_timed_save(store, states, stages)))

    found_by_row: dict[int, list[ScoredItem]] = dict(zip(searched, found, strict=True))
    params = RankingParams.from_settings(settings)
    timings_ms = {k: v * 1000.0 for k, v in stages.items()}
    generated_at = clock()
    t4 = time.perf_counter()
    extras = scored_against(catalogue_items(popular, fetched), vectors)
    for row, items in enumerate(scored_per_query(covisited_ids, fetched, vectors)):
        extras[row] += items
    shortlists = shortlists_for_users(
        [found_by_row.get(row, []) for row in range(len(states))],
        extras,
        states,
        popular,
        constraints,
        now,
        params,
        [negatives_of(state, item_vectors) for state in states],
        covisited,
    )
    ranked = mmr(shortlists, params.k, params.mmr_lambda)
    for state, vector, items in zip(states, vectors, ranked, strict=True):
        answered = by_user[state.user_id]
        result.outputs.append(
            OutMessage(
                topic=settings.recommendations_topic,
                key=state.user_id.encode(),
                value=encode_recommendation(
                    user_id=state.user_id,
                    event_ids=[e.event_id for e in answered],
                    items=items,
                    model_version=model_version,
                    generated_at=generated_at,
                    timings_ms=timings_ms,
                    strategy="user_vector" if vector is not None else "trending",
                ),
            )
        )
        assert result.event_timestamps is not None
        result.event_timestamps.extend(e.ts for e in answered)
    # After the messages are built: their timings_ms cover the stages before ranking.
    stages["rank"] = stages.get("rank", 0.0) + (time.perf_counter() - t4)
