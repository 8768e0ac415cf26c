"""Finding the message that breaks a batch: split on data errors until it stands alone.

A batch that fails with anything but an InfrastructureError is split in halves, each
handled on its own (the left half's user states carried into the right half, as if they
had been saved), recursively, until the failing message is alone: it is dead-lettered with
stage `process` and the exception's text, and every other message is answered. One bad
message in a batch of n costs about 2 log2(n) extra handler calls.

Before a lone message is blamed, the dependencies are probed: a fault that is really
Triton's or the store's (a failed request from a server that is going down) surfaces as an
InfrastructureError and the batch is retried instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from worker.errors import InfrastructureError
from worker.kafka.dead_letters import bounded_reason
from worker.records import BatchResult, DeadLetter, RawMessage
from worker.store import UserState

log = logging.getLogger(__name__)
Handler = Callable[[Sequence[RawMessage], dict[str, UserState]], Awaitable[BatchResult]]


async def handle_isolating(
    messages: Sequence[RawMessage],
    handler: Handler,
    *,
    probe: Callable[[], Awaitable[None]],
    on_split: Callable[[], None] = lambda: None,
    carried: dict[str, UserState] | None = None,
) -> BatchResult:
    carried = carried or {}
    try:
        # A copy: a failed attempt must leave nothing behind for the next one.
        return await handler(messages, dict(carried))
    except InfrastructureError:
        raise
    except Exception as exc:
        if len(messages) == 1:
            await probe()
            return _dead_letter(messages[0], exc)
        on_split()
        middle = len(messages) // 2
        left = await handle_isolating(
            messages[:middle], handler, probe=probe, on_split=on_split, carried=carried
        )
        ahead = {**carried, **{state.user_id: state for state in left.user_states}}
        right = await handle_isolating(
            messages[middle:], handler, probe=probe, on_split=on_split, carried=ahead
        )
        return left.merge(right)


def _dead_letter(message: RawMessage, exc: Exception) -> BatchResult:
    reason = bounded_reason(f"{type(exc).__name__}: {exc}", 1000)
    log.warning(
        "dead-lettering %s[%d]@%d (stage process): %s",
        message.topic, message.partition, message.offset, reason,
        exc_info=log.isEnabledFor(logging.DEBUG),
    )  # fmt: skip
    return BatchResult(dead_letters=[DeadLetter(message, "process", reason)])
