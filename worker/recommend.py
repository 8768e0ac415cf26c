"""The user-events path for one micro-batch, stage by stage:

parse -> load state (user states without their vectors, 1 store call; the events folded
in; the catalogue items needed, 1 call) -> encode (user vectors, 1 Triton call) -> retrieve
(1 batched Qdrant query) -> rank (pure: worker.ranking) -> emit (one recommendation per
user, coalesced, or per event round).

Nothing here changes anything: the returned outcome carries the outputs, the user states to
save and the signal updates (trending, co-visitation), which the pipeline's checkpoint
applies once the outputs are confirmed.

A user whose history has no catalogue item yet (a brand-new user, or items not indexed yet)
gets the trending items: strategy "trending" instead of "user_vector".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.answer import Answer, Round, consumed_items, rank_round
from worker.candidates import candidate_filter, search_request
from worker.context import Context
from worker.covisitation import top_unseen
from worker.erasure import erasure_messages, split_erasures
from worker.events import Forget, UserEvent, parse_message
from worker.recommendations import encode_recommendation, recommendation_doc, stored_list
from worker.records import BatchResult, DeadLetter, OutMessage, RawMessage
from worker.store import UserState
from worker.trending import counts_as_consumption
from worker.user_state import apply_events, fresh_events
from worker.user_vector import make_user_vectors
from worker.validation import InvalidMessage


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """A read API request's narrowing of the answer (GET /recommendations/{user_id})."""

    k: int | None = None  # RECOMMENDATIONS_K when None
    categories: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()


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


def covisit_pairs(
    before: UserState, fresh: Sequence[UserEvent], history: int
) -> list[tuple[str, list[str]]]:
    """Each new consumption paired with the user's consumed items before it (`fresh` holds
    only events the state has not applied: a redelivery is never paired again)."""
    earlier = consumed_items(before, history)
    pairs = []
    for event in fresh:
        if counts_as_consumption(event.type):
            pairs.append((event.item_id, earlier[-history:]))
            earlier.append(event.item_id)
    return pairs


async def recommend_batch(
    messages: Sequence[RawMessage], ctx: Context, carried: dict[str, UserState] | None = None
) -> BatchResult:
    """The outcome of one micro-batch; `carried` holds states not saved yet (earlier
    pieces of a split batch), read instead of the store."""
    result = BatchResult()
    started = time.perf_counter()
    now, settings = ctx.clock(), ctx.settings
    earliest = None if settings.event_max_age_s is None else now - settings.event_max_age_s
    parsed = parse_events(messages, result, now + settings.event_max_future_s, earliest)
    events, result.erasures, result.events_erased = split_erasures(parsed, ctx.erasures)
    result.stage_seconds["decode"] = time.perf_counter() - started
    # Each round's states carry over to the next: they are saved only at the checkpoint.
    carried = {} if carried is None else carried
    for erasure in result.erasures:
        # Afresh: the events after the forget never meet the erased state.
        carried[erasure.user_id] = UserState(erasure.user_id, partition=erasure.partition)
        result.outputs += erasure_messages(erasure, settings, ctx.erasures.key)
        # Known at once, not at the checkpoint: a new-item push computed meanwhile must not
        # republish the erased user's list (marking twice on a retry changes nothing).
        ctx.erasures.mark_user(erasure.user_id, erasure.erased_up_to)
    for round_events in event_rounds(events, coalesce=ctx.settings.coalesce_events):
        await _recommend_round(round_events, result, ctx, carried)
    result.user_states = [carried[uid] for uid in dict.fromkeys(e.user_id for e in events)]
    return result


async def recommend_now(user_id: str, ctx: Context, query: ReadQuery) -> dict[str, Any]:
    """One answer computed on demand through the events path, for the user's stored state
    as it is (no event recorded, nothing saved); a user without a usable history gets the
    cold-start (trending) list."""
    result = BatchResult()
    rnd = await load_state({user_id: []}, result, ctx, {})
    state = rnd.states[0]
    state.seen = [*state.seen, *query.exclude]
    rnd.seen_sets = rnd.covisited_ids = None  # made again, with the excluded items
    rnd.vectors = await make_user_vectors(
        ctx.triton, rnd.states, rnd.item_vectors, window=ctx.settings.history_window
    )
    await retrieve(rnd, ctx, query.categories)
    (answer,) = rank_round(rnd, ctx, k=query.k)
    return answer_doc(user_id, [], answer, ctx, ctx.clock())


def parse_events(
    messages: Sequence[RawMessage],
    result: BatchResult,
    latest_ts: float,
    earliest_ts: float | None = None,
) -> list[tuple[int, UserEvent | Forget]]:
    """Stage 1, parse: (partition, event or erasure request) in message order; the rest
    become dead letters with stage `decode`."""
    parsed: list[tuple[int, UserEvent | Forget]] = []
    for msg in messages:
        try:
            op = parse_message(
                msg.key,
                msg.value,
                received_at=msg.timestamp,
                latest_ts=latest_ts,
                earliest_ts=earliest_ts,
            )
        except InvalidMessage as exc:
            result.dead_letters.append(DeadLetter(msg, "decode", str(exc)))
            continue
        parsed.append((msg.partition, op))
        result.user_partitions[op.user_id] = msg.partition
    return parsed


def _timed(stages: dict[str, float], stage: str, since: float) -> float:
    now = time.perf_counter()
    stages[stage] = stages.get(stage, 0.0) + (now - since)
    return now


async def _recommend_round(
    by_user: dict[str, list[UserEvent]],
    result: BatchResult,
    ctx: Context,
    carried: dict[str, UserState],
) -> None:
    stages = result.stage_seconds
    t = time.perf_counter()
    rnd = await load_state(by_user, result, ctx, carried)
    t = _timed(stages, "state", t)
    rnd.vectors = await make_user_vectors(
        ctx.triton, rnd.states, rnd.item_vectors, window=ctx.settings.history_window
    )
    t = _timed(stages, "triton", t)
    await retrieve(rnd, ctx)
    t = _timed(stages, "qdrant", t)
    for state, vector in zip(rnd.states, rnd.vectors, strict=True):
        if vector is not None:
            state.vector, state.item_space = vector, ctx.store.item_space
    await keep_stored_vectors(rnd, ctx)
    emit(rnd, result, ctx, timings_ms={k: v * 1000.0 for k, v in stages.items()})
    _timed(stages, "rank", t)


async def load_state(
    by_user: dict[str, list[UserEvent]],
    result: BatchResult,
    ctx: Context,
    carried: dict[str, UserState],
) -> Round:
    """Stage 2: user states (1 store call) with the round's events folded in, the signal
    updates they make (deferred), and the catalogue items the round needs (1 call)."""
    settings, signals = ctx.settings, ctx.signals
    user_ids = list(by_user)
    unread = [uid for uid in user_ids if uid not in carried]
    # Without their vectors: the user encoder makes each one afresh (see
    # `keep_stored_vectors` for a user it can make none for).
    stored = await ctx.store.get_users(unread, with_vectors=False) if unread else {}
    vectorless = {uid for uid, state in stored.items() if state.vector is None}
    stored.update((uid, carried[uid]) for uid in user_ids if uid in carried)
    states = []
    for uid in user_ids:
        before = stored.get(uid) or UserState(user_id=uid)
        before.partition = result.user_partitions.get(uid, before.partition)
        fresh = fresh_events(before, by_user[uid])
        updates = result.signals
        updates.trending += [(e.item_id, e.ts) for e in fresh if counts_as_consumption(e.type)]
        if settings.covisitation_weight > 0:
            updates.covisits += covisit_pairs(before, fresh, settings.covisitation_history)
        states.append(
            apply_events(
                before,
                fresh,
                weights=settings.event_weights,
                history_window=settings.history_window,
                seen_window=settings.seen_window,
                fresh=fresh,
            )
        )
    carried.update((state.user_id, state) for state in states)
    popular = signals.trending.top(settings.trending_size)
    covisited = (
        signals.covisitation.scores_many(
            [consumed_items(s, settings.covisitation_history) for s in states]
        )
        if settings.covisitation_weight > 0
        else [{} for _ in states]
    )
    seen = [set(state.seen) for state in states]
    covisited_ids = [
        top_unseen(scores, done, settings.covisitation_candidates)
        for scores, done in zip(covisited, seen, strict=True)
    ]
    wanted_ids = {i.item_id for s in states for i in s.history} | set(popular)
    wanted_ids.update(item_id for ids in covisited_ids for item_id in ids)
    fetched = await ctx.store.get_items(sorted(wanted_ids))
    now = max((e.ts for evs in by_user.values() for e in evs), default=ctx.clock())
    pins = await ctx.rules.pinned(ctx.store, ctx.clock())
    return Round(
        by_user, states, popular, covisited, fetched, now, pins=pins, seen_sets=seen,
        covisited_ids=covisited_ids, vectorless=vectorless,
    )  # fmt: skip


async def keep_stored_vectors(rnd: Round, ctx: Context) -> None:
    """A user the encoder made no vector for (no history item in the catalogue now) keeps
    the stored one, as a user read with its vector would: read for those users only."""
    missing = [
        state
        for state, vector in zip(rnd.states, rnd.vectors, strict=True)
        if vector is None and state.user_id in rnd.vectorless
    ]
    if not missing:
        return
    stored = await ctx.store.get_users([state.user_id for state in missing])
    for state in missing:
        kept = stored.get(state.user_id)
        if kept is not None:
            state.vector = kept.vector


async def retrieve(rnd: Round, ctx: Context, categories: tuple[str, ...] | None = None) -> None:
    """Stage 4: one batched Qdrant query for every user with a vector and a category left
    (`categories`: a read request's, narrowing the settings' and the events')."""
    settings = ctx.settings
    # Event time, not the wall clock: freshness and windows then mean the same in a replay.
    available_at = ctx.clock()
    rnd.constraints = [
        candidate_filter(settings, rnd.by_user[s.user_id], rnd.now, available_at).narrowed(
            categories
        )
        for s in rnd.states
    ]
    searched = [
        row
        for row, vector in enumerate(rnd.vectors)
        if vector is not None and rnd.constraints[row].categories != ()
    ]
    requests = [
        search_request(
            rnd.vectors[row],  # type: ignore[arg-type]
            rnd.states[row].seen,
            k=settings.candidate_pool,
            constraints=rnd.constraints[row],
        )
        for row in searched
    ]
    found = await ctx.store.search_candidates(requests) if requests else []
    rnd.found = dict(zip(searched, found, strict=True))


def emit(rnd: Round, result: BatchResult, ctx: Context, timings_ms: dict[str, float]) -> None:
    """Stages 5-6, rank and emit: one answer per user (pure), also kept in the user's state
    for the read API."""
    generated_at = ctx.clock()
    for state, answer in zip(rnd.states, rank_round(rnd, ctx), strict=True):
        answered = rnd.by_user[state.user_id]
        doc = answer_doc(state.user_id, [e.event_id for e in answered], answer, ctx, generated_at)
        state.latest = stored_list(doc)
        result.answers.append((answer.variant, answer.strategy, answer.reason_kinds))
        result.outputs.append(
            OutMessage(
                topic=ctx.settings.recommendations_topic,
                key=state.user_id.encode(),
                value=encode_recommendation(doc, timings_ms),
            )
        )
        result.event_timestamps.extend(e.ts for e in answered)


def answer_doc(
    user_id: str, event_ids: Sequence[str], answer: Answer, ctx: Context, generated_at: float
) -> dict[str, Any]:
    return recommendation_doc(
        user_id=user_id,
        event_ids=event_ids,
        items=answer.items,
        model_version=ctx.model_version,
        variant=answer.variant,
        generated_at=generated_at,
        strategy=answer.strategy,
        reasons=answer.reasons,
    )
