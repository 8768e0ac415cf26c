"""Where a user's state absorbs new events: bounded history and the seen-set (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from worker.events import UserEvent, event_weight
from worker.store import Interaction, UserState


def apply_events(
    state: UserState,
    events: Sequence[UserEvent],
    *,
    weights: dict[str, float],
    history_window: int,
    seen_window: int,
) -> UserState:
    """Fold events (any order) into the state; a replayed event_id is ignored."""
    known = {i.event_id for i in state.history if i.event_id}
    history = list(state.history)
    seen = list(state.seen)
    seen_set = set(seen)
    for event in sorted(events, key=lambda e: e.ts):
        if event.event_id in known:
            continue
        known.add(event.event_id)
        history.append(
            Interaction(
                item_id=event.item_id,
                type=event.type,
                weight=event_weight(event, weights),
                ts=event.ts,
                event_id=event.event_id,
            )
        )
        if event.item_id in seen_set:
            # Move to the end so the exclusion window keeps the most recent items.
            seen.remove(event.item_id)
        seen.append(event.item_id)
        seen_set.add(event.item_id)
    history.sort(key=lambda i: i.ts)
    latest = max((e.ts for e in events), default=state.updated_at)
    return UserState(
        user_id=state.user_id,
        history=history[-history_window:],
        seen=seen[-seen_window:],
        vector=state.vector,
        updated_at=max(state.updated_at, latest),
    )
