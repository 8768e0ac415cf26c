"""Erasure: a user's `forget` event (or a tombstone on user-events for the user's key)
deletes what the worker holds for the user, and confirms it on `user-erasures`.

Per erasure, in the batch's checkpoint (README, Privacy):
  - the user's state (history, seen-set, vector, stored list) is deleted from the store,
    and (embedded store) a tombstone goes to the user-state changelog;
  - a tombstone goes to the compacted `recommendations` topic (the user's latest list);
  - the user's push-limit entry is dropped;
  - a confirmation goes to `user-erasures`, keyed by the user's hash (no user id):
    {"user_hash", "event_id", "erased_up_to", "confirmed_at", "deleted": [...]}.
Every worker reads `user-erasures` whole and remembers each hash's `erased_up_to`: events
of the user dated up to it are dropped, so a replay of old events rebuilds nothing; events
sent again later count as new. In a batch, a user's events before the forget are dropped
too (not answered); those after it start from an empty state.

Trending and co-visitation hold counts per item, not per user: an erased user's past
events stay in them anonymously.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from worker.changelog.reader import ChangelogReader
from worker.events import Forget, UserEvent
from worker.metrics import Metrics
from worker.records import OutMessage, RawMessage
from worker.settings import Settings
from worker.validation import InvalidMessage, decode_json_object

log = logging.getLogger(__name__)
DELETED = ("user_state", "stored_list", "recommendations", "push_limit")


def user_hash(user_id: str, key: bytes = b"") -> str:
    """A stable pseudonym of a user id for logs and confirmations (keyed by
    USER_HASH_KEY when set: then nobody without the key can test an id against it)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=16, key=key[:64], person=b"user")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Erasure:
    user_id: str
    event_id: str
    erased_up_to: float  # epoch seconds
    partition: int  # the user-events partition it came on


class ErasureLog:
    """User hash -> the time up to which the user's events are erased (from user-erasures)."""

    def __init__(self, key: bytes = b"") -> None:
        self.key = key
        self._up_to: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._up_to)

    def erased_up_to(self, user_id: str) -> float | None:
        return self._up_to.get(user_hash(user_id, self.key)) if self._up_to else None

    def mark_user(self, user_id: str, up_to: float) -> None:
        self.mark(user_hash(user_id, self.key), up_to)

    def mark(self, hashed: str, up_to: float) -> None:
        self._up_to[hashed] = max(up_to, self._up_to.get(hashed, up_to))

    def absorb(self, value: bytes | None) -> None:
        """One user-erasures record; InvalidMessage for one this version cannot read."""
        doc = decode_json_object(value)
        hashed, up_to = doc.get("user_hash"), doc.get("erased_up_to")
        if not isinstance(hashed, str) or not isinstance(up_to, int | float):
            raise InvalidMessage("a user-erasures record needs user_hash and erased_up_to")
        self.mark(hashed, float(up_to))


class ErasureFeed:
    """Every worker's confirmations, read whole: the erased users' cut-off times."""

    def __init__(self, settings: Settings, log: ErasureLog, metrics: Metrics) -> None:
        self.log = log
        self.metrics = metrics
        self.reader = ChangelogReader.of_feed(
            settings, settings.user_erasures_topic, self._apply, metrics
        )

    async def _apply(self, records: Sequence[RawMessage]) -> None:
        for record in records:
            try:
                self.log.absorb(record.value)
            except InvalidMessage as exc:
                log.warning("user-erasures offset %d skipped: %s", record.offset, exc)
                self.metrics.messages_failed.labels(record.topic, "decode").inc()


def split_erasures(
    parsed: Sequence[tuple[int, UserEvent | Forget]], log: ErasureLog
) -> tuple[list[UserEvent], list[Erasure], int]:
    """(partition, event or forget) in message order -> the events to answer, the batch's
    erasures (one per user: the latest), and how many events were dropped as erased."""
    erasures: dict[str, Erasure] = {}
    for partition, op in parsed:
        if isinstance(op, Forget):
            erasures.pop(op.user_id, None)
            erasures[op.user_id] = Erasure(op.user_id, op.event_id, op.ts, partition)
    events: list[UserEvent] = []
    dropped = 0
    last_forget = {op.user_id: n for n, (_, op) in enumerate(parsed) if isinstance(op, Forget)}
    for n, (_, op) in enumerate(parsed):
        if isinstance(op, Forget):
            continue
        erased = erasures.get(op.user_id)
        before = log.erased_up_to(op.user_id)
        if n < last_forget.get(op.user_id, -1) or (
            (erased is not None and op.ts <= erased.erased_up_to)
            or (before is not None and op.ts <= before)
        ):
            dropped += 1
            continue
        events.append(op)
    return events, list(erasures.values()), dropped


def erasure_messages(
    erasure: Erasure, settings: Settings, key: bytes = b"", now: float | None = None
) -> list[OutMessage]:
    """The tombstone of the user's latest list and the confirmation."""
    hashed = user_hash(erasure.user_id, key)
    confirmation = {
        "user_hash": hashed,
        "event_id": erasure.event_id or None,
        "erased_up_to": erasure.erased_up_to,
        "confirmed_at": time.time() if now is None else now,
        "deleted": list(DELETED),
    }
    return [
        OutMessage(settings.recommendations_topic, erasure.user_id.encode(), None),
        OutMessage(settings.user_erasures_topic, hashed.encode(), orjson.dumps(confirmation)),
    ]
