"""Poison-message isolation: a data error never costs the rest of the batch."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from worker.errors import InfrastructureError
from worker.isolation import handle_isolating
from worker.records import BatchResult, OutMessage, RawMessage
from worker.store import UserState


def _batch(n: int) -> list[RawMessage]:
    return [RawMessage("t", 0, i, b"u", str(i).encode(), 0.0) for i in range(n)]


class _Handler:
    """Answers each message; raises on the poison ones; counts in a per-user state."""

    def __init__(self, poison: set[int], infra: bool = False) -> None:
        self.poison, self.infra, self.calls = poison, infra, 0

    async def __call__(
        self, messages: Sequence[RawMessage], carried: dict[str, UserState]
    ) -> BatchResult:
        self.calls += 1
        if self.infra:
            raise InfrastructureError("down")
        state = carried.get("u") or UserState("u")
        for msg in messages:
            if msg.offset in self.poison:
                raise TypeError(f"unhashable type: 'list' at {msg.offset}")
            state = UserState("u", seen=[*state.seen, str(msg.offset)])
        return BatchResult(
            outputs=[OutMessage("out", b"u", msg.value or b"") for msg in messages],
            user_states=[state],
        )


async def _healthy() -> None:
    pass


async def test_a_poison_message_in_the_middle_is_dead_lettered_and_the_rest_answered() -> None:
    handler = _Handler(poison={37})
    result = await handle_isolating(_batch(64), handler, probe=_healthy)
    assert [(d.source.offset, d.stage) for d in result.dead_letters] == [(37, "process")]
    assert "unhashable type" in result.dead_letters[0].reason
    assert [o.value for o in result.outputs] == [str(i).encode() for i in range(64) if i != 37]
    # The right half saw the left half's state, as if it had been saved in between.
    [state] = result.user_states
    assert state.seen == [str(i) for i in range(64) if i != 37]
    assert handler.calls <= 2 * 6 + 1


async def test_every_poison_message_is_found() -> None:
    result = await handle_isolating(_batch(16), _Handler(poison={0, 5, 15}), probe=_healthy)
    assert sorted(d.source.offset for d in result.dead_letters) == [0, 5, 15]
    assert len(result.outputs) == 13


async def test_an_infrastructure_error_is_not_isolated_but_raised() -> None:
    with pytest.raises(InfrastructureError):
        await handle_isolating(_batch(8), _Handler(set(), infra=True), probe=_healthy)


async def test_a_lone_failure_while_a_dependency_is_down_is_not_blamed_on_the_message() -> None:
    async def down() -> None:
        raise InfrastructureError("triton not ready")

    with pytest.raises(InfrastructureError):
        await handle_isolating(_batch(4), _Handler(poison={0, 1, 2, 3}), probe=down)
