from worker.events import UserEvent
from worker.settings import DEFAULT_EVENT_WEIGHTS
from worker.store import Interaction, UserState
from worker.user_state import apply_events, fresh_events


def _ev(event_id: str, item_id: str, ts: float, etype: str = "click") -> UserEvent:
    return UserEvent(event_id, "u1", item_id, etype, None, ts)


def _apply(state: UserState, events: list[UserEvent], window: int = 3, seen: int = 10) -> UserState:
    return apply_events(
        state, events, weights=DEFAULT_EVENT_WEIGHTS, history_window=window, seen_window=seen
    )


def test_events_are_appended_in_time_order_with_signed_weights() -> None:
    state = _apply(UserState("u1"), [_ev("b", "i2", 2.0, "dislike"), _ev("a", "i1", 1.0)])
    assert [i.item_id for i in state.history] == ["i1", "i2"]
    assert state.history[0].weight > 0 > state.history[1].weight
    assert state.seen == ["i1", "i2"]
    assert state.updated_at == 2.0


def test_history_is_bounded_to_the_most_recent_window() -> None:
    events = [_ev(f"e{n}", f"i{n}", float(n)) for n in range(5)]
    state = _apply(UserState("u1"), events, window=3)
    assert [i.item_id for i in state.history] == ["i2", "i3", "i4"]
    assert len(state.seen) == 5  # exclusion outlives the history window


def test_replayed_event_ids_are_ignored() -> None:
    first = _apply(UserState("u1"), [_ev("a", "i1", 1.0)])
    again = _apply(first, [_ev("a", "i1", 1.0)])
    assert again.history == first.history


def test_seen_window_keeps_the_latest_items_and_moves_repeats_to_the_end() -> None:
    state = UserState("u1", history=[Interaction("i0", "view", 0.3, 0.0, "x")], seen=["i0", "i1"])
    state = _apply(state, [_ev("a", "i0", 1.0), _ev("b", "i2", 2.0)], seen=2)
    assert state.seen == ["i0", "i2"]


def test_a_redelivered_event_is_recognised_after_it_left_the_history() -> None:
    state = UserState(user_id="u")
    first = [UserEvent(f"e{n}", "u", f"i{n}", "click", None, 1.7e9 + n) for n in range(200)]
    state = apply_events(
        state, first, weights=DEFAULT_EVENT_WEIGHTS, history_window=50, seen_window=1000
    )
    assert len(state.history) == 50  # e0..e149 are no longer in the history
    again = apply_events(
        state, first[:10], weights=DEFAULT_EVENT_WEIGHTS, history_window=50, seen_window=1000
    )
    assert again.history == state.history and again.seen == state.seen
    new = UserEvent("new", "u", "x", "click", None, 2e9)
    # Many events at once, and one or two (checked digest by digest, not through a set).
    assert fresh_events(state, [*first[:10], new]) == [new]
    assert fresh_events(state, [first[0]]) == []
    assert fresh_events(state, [new, first[3], new]) == [new]


def test_the_state_keeps_the_events_partition_it_belongs_to() -> None:
    state = UserState("u1", partition=3)
    after = apply_events(
        state, [_ev("e1", "a", 1.0)], weights=DEFAULT_EVENT_WEIGHTS, history_window=5, seen_window=5
    )
    assert after.partition == 3
