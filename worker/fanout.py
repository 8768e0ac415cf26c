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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from worker.candidates import candidate_filter, search_request
from worker.covisitation import CoVisitation
from worker.ranking import RankingParams, mmr
from worker.recommend import consumed_items, negatives_of, shortlists_for_users
from worker.recommendations import encode_recommendation
from worker.records import OutMessage
from worker.settings import Settings
from worker.store import VectorStore
from worker.trending import Trending


class PushLimiter:
    """Remembers when each user last got a push; bounded (the oldest entries go first,
    and they are the ones whose interval has passed anyway)."""

    def __init__(self, min_interval_s: float, max_users: int = 100_000) -> None:
        self.min_interval_s = min_interval_s
        self.max_users = max_users
        self._last: OrderedDict[str, float] = OrderedDict()

    def allowed(self, user_id: str, now: float) -> bool:
        last = self._last.get(user_id)
        return last is None or now - last >= self.min_interval_s

    def mark(self, user_id: str, now: float) -> None:
        self._last[user_id] = now
        self._last.move_to_end(user_id)
        while len(self._last) > self.max_users:
            self._last.popitem(last=False)


async def fan_out(
    item_ids: Sequence[str],
    *,
    store: VectorStore,
    trending: Trending,
    covisitation: CoVisitation,
    limiter: PushLimiter,
    settings: Settings,
    model_version: str,
    now: float,
) -> list[OutMessage]:
    """Recommendations to push because of these (just upserted) items."""
    if not item_ids or settings.fanout_users_per_item == 0:
        return []
    fetched = await store.get_items(item_ids)
    fresh = [
        item
        for item in fetched.values()
        if item.vector is not None and now - item.created_at <= settings.fanout_max_item_age_s
    ]
    if not fresh:
        return []
    neighbours = await store.search_users(
        [item.vector for item in fresh],  # type: ignore[misc]
        settings.fanout_users_per_item,
    )
    triggers: dict[str, list[str]] = {}
    for item, users in zip(fresh, neighbours, strict=True):
        for user_id, _ in users:
            if limiter.allowed(user_id, now):
                triggers.setdefault(user_id, []).append(item.item_id)
    if not triggers:
        return []
    states = [s for s in (await store.get_users(list(triggers))).values() if s.vector is not None]
    disliked = await store.get_item_vectors(
        sorted({i.item_id for s in states for i in s.history if i.weight < 0})
    )
    constraints = candidate_filter(settings, [], now)
    found = await store.search_items(
        [
            search_request(s.vector, s.seen, k=settings.candidate_pool, constraints=constraints)  # type: ignore[arg-type]
            for s in states
        ]
    )
    popular = trending.top(settings.trending_size)
    params = RankingParams.from_settings(settings)
    history = settings.covisitation_history
    shortlists = shortlists_for_users(
        found,
        [[] for _ in states],
        states,
        popular,
        [constraints] * len(states),
        now,
        params,
        [negatives_of(state, disliked) for state in states],
        [covisitation.scores(consumed_items(state, history)) for state in states]
        if params.covisitation_weight
        else None,
    )
    outputs = []
    for state, items in zip(states, mmr(shortlists, params.k, params.mmr_lambda), strict=True):
        listed = {item.item_id for item in items}
        new_in = [item_id for item_id in triggers[state.user_id] if item_id in listed]
        if not new_in:
            continue
        limiter.mark(state.user_id, now)
        outputs.append(
            OutMessage(
                topic=settings.recommendations_topic,
                key=state.user_id.encode(),
                value=encode_recommendation(
                    user_id=state.user_id,
                    event_ids=[],
                    items=items,
                    model_version=model_version,
                    generated_at=now,
                    timings_ms={},
                    strategy="new_item",
                    trigger_item_ids=new_in,
                ),
            )
        )
    return outputs
