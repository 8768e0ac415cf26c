from worker.events import UserEvent
from worker.recommend import event_rounds


def _ev(event_id: str, user: str) -> UserEvent:
    return UserEvent(event_id, user, "i", "click", None, 0.0)


def test_coalescing_gives_each_user_one_answer_for_all_their_events() -> None:
    rounds = event_rounds([_ev("1", "a"), _ev("2", "b"), _ev("3", "a")], coalesce=True)
    assert len(rounds) == 1
    assert [e.event_id for e in rounds[0]["a"]] == ["1", "3"]


def test_without_coalescing_each_event_gets_its_own_round_in_order() -> None:
    rounds = event_rounds([_ev("1", "a"), _ev("2", "b"), _ev("3", "a")], coalesce=False)
    assert [{u: [e.event_id for e in evs] for u, evs in r.items()} for r in rounds] == [
        {"a": ["1"], "b": ["2"]},
        {"a": ["3"]},
    ]


def test_no_events_no_rounds() -> None:
    assert event_rounds([], coalesce=True) == []
