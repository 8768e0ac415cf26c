"""New-item fan-out: when an item is indexed, push refreshed recommendations to the users
whose vectors are nearest to it.

Per items micro-batch, after the upsert: fetch the new items (1 store call) -> nearest user
vectors per item (1 batched call) -> those users' states (1 call) and the items they
disliked (1 call) -> their candidates (1 batched query) -> the same ranking as the events
path (co-visitation included). A user gets a push only when one of
the new items made it into their top k (otherwise nothing changed for them), at most
`fanout_users_per_item` users per item, and each user at most once per
`fanout_user_interval_s`. Pushes have strategy "new_item", no event ids, and list the new
items in `trigger_item_ids`.

With the embedded store each worker holds its own users: every worker fans out every new
item (its own ingests here, the others' as it materialises them: changelog/state.py) to the
users of the events partitions it owns, so each user is considered by exactly one worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.answer import Answer, Round, consumed_items, rank_round
from worker.candidates import candidate_filter, search_request
from worker.context import Context
from worker.recommendations import encode_recommendation, recommendation_doc
from worker.records import Answered, OutMessage
from worker.store import UserState


async def fan_out(
    item_ids: Sequence[str], ctx: Context, *, now: float
) -> tuple[list[OutMessage], list[tuple[str, float]], list[Answered]]:
    """Recommendations to push because of these (just upserted) items, the push-limit
    marks to apply once they are delivered, and (variant, strategy, reasons) per push for
    the metrics."""
    settings, store = ctx.settings, ctx.store
    if not item_ids or settings.fanout_users_per_item == 0 or ctx.owned_partitions == set():
        return [], [], []
    triggers = await _triggers(item_ids, ctx, now)
    if not triggers:
        return [], [], []
    states = [
        s
        for s in (await store.get_users(list(triggers))).values()
        if s.vector is not None and not _erased(s, ctx)
    ]
    rnd = await _round(states, ctx, now)
    outputs, pushes, answered = [], [], []
    for state, answer in zip(states, rank_round(rnd, ctx), strict=True):
        listed = {item.item_id for item in answer.items}
        new_in = [item_id for item_id in triggers[state.user_id] if item_id in listed]
        if not new_in:
            continue
        pushes.append((state.user_id, now))
        answered.append((answer.variant, "new_item", answer.reason_kinds))
        outputs.append(_push(state.user_id, answer, new_in, ctx, now))
    return outputs, pushes, answered


async def _round(states: list[UserState], ctx: Context, now: float) -> Round:
    """The pushed users' round, as the events path has it after retrieval: their history
    items (negative feedback and reasons need the vectors), one search, the signals."""
    settings, store = ctx.settings, ctx.store
    fetched = await store.get_items(sorted({i.item_id for s in states for i in s.history}))
    constraints = candidate_filter(settings, [], now, ctx.clock())
    found = await store.search_candidates(
        [
            search_request(s.vector, s.seen, k=settings.candidate_pool, constraints=constraints)  # type: ignore[arg-type]
            for s in states
        ]
    )
    covisitation, history = ctx.signals.covisitation, settings.covisitation_history
    return Round(
        by_user={s.user_id: [] for s in states},
        states=states,
        popular=ctx.signals.trending.top(settings.trending_size),
        covisited=covisitation.scores_many([consumed_items(s, history) for s in states])
        if settings.covisitation_weight
        else [{} for _ in states],
        fetched=fetched,
        now=now,
        vectors=[s.vector for s in states],
        constraints=[constraints] * len(states),
        found=dict(enumerate(found)),
        pins=await ctx.rules.pinned(store, ctx.clock()),
    )


def _push(user_id: str, answer: Answer, new_in: list[str], ctx: Context, now: float) -> OutMessage:
    doc = recommendation_doc(
        user_id=user_id,
        event_ids=[],
        items=answer.items,
        model_version=ctx.model_version,
        variant=answer.variant,
        generated_at=now,
        strategy="new_item",
        reasons=answer.reasons,
        trigger_item_ids=new_in,
    )
    return OutMessage(
        ctx.settings.recommendations_topic, user_id.encode(), encode_recommendation(doc, {})
    )


def partitions_to_search(owned: set[int] | None, every: set[int]) -> list[int] | None:
    """The partitions whose users a new item is pushed to; None: every user. A worker that
    owns every partition of the topic (`every`, when known) needs no filter, which costs
    ~6x an unfiltered scan of the users (load_tests/users_bench.py)."""
    if owned is None or (every and owned >= every):
        return None
    return sorted(owned)


def _erased(state: UserState, ctx: Context) -> bool:
    """A state made before its user's erasure (being deleted right now): no push."""
    up_to = ctx.erasures.erased_up_to(state.user_id)
    return up_to is not None and state.updated_at <= up_to


async def _triggers(item_ids: Sequence[str], ctx: Context, now: float) -> dict[str, list[str]]:
    """User id -> the new items near that user's vector (fresh items only, users whose push
    interval has passed)."""
    settings, store = ctx.settings, ctx.store
    # Items and users of one item space only (a model upgrade switches it between batches).
    space = store.item_space
    fetched = await store.get_items(item_ids)
    fresh = [
        item
        for item in fetched.values()
        if item.vector is not None and now - item.created_at <= settings.fanout_max_item_age_s
    ]
    if not fresh:
        return {}
    neighbours = await store.search_users(
        [item.vector for item in fresh],  # type: ignore[misc]
        settings.fanout_users_per_item,
        partitions=partitions_to_search(ctx.owned_partitions, ctx.event_partitions),
        item_space=space or None,
    )
    triggers: dict[str, list[str]] = {}
    for item, users in zip(fresh, neighbours, strict=True):
        for user_id, _ in users:
            if ctx.signals.push_limiter.allowed(user_id, now):
                triggers.setdefault(user_id, []).append(item.item_id)
    return triggers
