"""Plain records passed between the Kafka adapter and the batch handlers (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.store.base import ItemRecord, UserState

if TYPE_CHECKING:
    from worker.erasure import Erasure

# (variant, strategy, the kinds of every reason listed) of one published answer.
Answered = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed Kafka message, exactly as it arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # broker/producer timestamp, epoch seconds
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be processed, with the reason, bound for `<topic>.dlq`."""

    source: RawMessage
    stage: str  # decode | media | embed | process | ...
    reason: str


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone (compacted topics)
    partition: int | None = None  # None: the producer's partitioner (by key)
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class SignalUpdates:
    """Changes to the in-memory signals a batch would make; applied only once the batch's
    outputs are confirmed, so a retried batch counts nothing twice."""

    trending: list[tuple[str, float]] = field(default_factory=list)  # (item_id, event ts)
    covisits: list[tuple[str, list[str]]] = field(default_factory=list)  # (item, earlier)
    pushes: list[tuple[str, float]] = field(default_factory=list)  # (user_id, pushed at)

    def extend(self, other: SignalUpdates) -> None:
        self.trending += other.trending
        self.covisits += other.covisits
        self.pushes += other.pushes


@dataclass(slots=True)
class BatchResult:
    """A batch handler's outcome: nothing here has happened yet. The pipeline's checkpoint
    publishes the outputs and dead letters and saves the user states, commits, and only
    then applies the signal updates."""

    outputs: list[OutMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    user_states: list[UserState] = field(default_factory=list)  # saved with the outputs
    signals: SignalUpdates = field(default_factory=SignalUpdates)
    event_timestamps: list[float] = field(default_factory=list)  # answered events (latency)
    indexed: int = 0  # items upserted
    deleted: int = 0  # items deleted by tombstones
    # Items this batch wrote (last write per id wins: an upsert then a tombstone is not one).
    upserted_ids: list[str] = field(default_factory=list)
    # For the changelogs: the items written and deleted, and each answered user's events
    # partition (its state is written to the same partition of the user-state topic).
    items_written: list[ItemRecord] = field(default_factory=list)
    items_deleted: list[str] = field(default_factory=list)
    user_partitions: dict[str, int] = field(default_factory=dict)
    # (variant, strategy, reason kinds listed) of each answer, for the metrics.
    answers: list[Answered] = field(default_factory=list)
    # Users to erase at the checkpoint (worker/erasure.py), and events dropped as erased.
    erasures: list[Erasure] = field(default_factory=list)
    events_erased: int = 0

    def merge(self, later: BatchResult) -> BatchResult:
        """This outcome followed by `later`'s (pieces of a split batch, in offset order)."""
        self.outputs += later.outputs
        self.dead_letters += later.dead_letters
        for stage, seconds in later.stage_seconds.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        # A user erased in `later` keeps only a state `later` made after the erasure.
        erased = {erasure.user_id for erasure in later.erasures}
        earlier = [state for state in self.user_states if state.user_id not in erased]
        latest = {state.user_id: state for state in (*earlier, *later.user_states)}
        self.user_states = list(latest.values())
        self.signals.extend(later.signals)
        self.event_timestamps += later.event_timestamps
        self.indexed += later.indexed
        self.deleted += later.deleted
        self.upserted_ids += later.upserted_ids
        self.items_written += later.items_written
        self.items_deleted += later.items_deleted
        self.user_partitions.update(later.user_partitions)
        self.answers += later.answers
        self.erasures += later.erasures
        self.events_erased += later.events_erased
        return self
