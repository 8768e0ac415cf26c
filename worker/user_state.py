"""Where a user's state absorbs new events: bounded history, seen-set, applied event ids
(pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from worker.events import UserEvent, event_weight
from worker.store import Interaction, UserState

_KEY = np.dtype("<u8")


def event_key(event_id: str) -> int:
    """A stable 64-bit digest of an event id (the state keeps these, not the ids: 8 bytes
    an event over the whole seen window; a false duplicate needs a 2^-64 collision)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def fresh_events(state: UserState, events: Sequence[UserEvent]) -> list[UserEvent]:
    """The events the state has not applied yet, in time order, each event id once: a
    redelivered or re-produced event is recognised for as long as its item is within the
    user's seen window, not only while it is in the history."""
    known_ids = {i.event_id for i in state.history if i.event_id}
    held = np.frombuffer(state.event_keys, dtype=_KEY)
    # A few events against SEEN_WINDOW digests: one comparison each (~3 µs for 1,000), not
    # a set of them all (~35 µs, most of absorbing an event into a long-lived user's state).
    known_keys = set(held.tolist()) if len(events) > _FEW_EVENTS else None
    fresh, taken = [], set()
    for event in sorted(events, key=lambda e: e.ts):
        if event.event_id in known_ids:
            continue
        key = event_key(event.event_id)
        if key in taken:
            continue
        if (key in known_keys) if known_keys is not None else bool((held == key).any()):
            continue
        taken.add(key)
        fresh.append(event)
    return fresh


_FEW_EVENTS = 8


def apply_events(
    state: UserState,
    events: Sequence[UserEvent],
    *,
    weights: dict[str, float],
    history_window: int,
    seen_window: int,
    fresh: Sequence[UserEvent] | None = None,
) -> UserState:
    """Fold events (any order) into the state; an already applied event_id is ignored.
    `fresh`: `fresh_events(state, events)`, where the caller has it already."""
    if fresh is None:
        fresh = fresh_events(state, events)
    history = list(state.history)
    seen = list(state.seen)
    seen_set = set(seen)
    for event in fresh:
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
    keys = state.event_keys + np.array([event_key(e.event_id) for e in fresh], _KEY).tobytes()
    latest = max((e.ts for e in events), default=state.updated_at)
    return UserState(
        user_id=state.user_id,
        history=history[-history_window:],
        seen=seen[-seen_window:],
        vector=state.vector,
        updated_at=max(state.updated_at, latest),
        event_keys=keys[-seen_window * _KEY.itemsize :],
        partition=state.partition,
        item_space=state.item_space,
        latest=state.latest,
    )
