"""Plain records passed between the Kafka adapter and the batch handlers (no I/O here)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed Kafka message, exactly as it arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # broker/producer timestamp, epoch seconds


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be processed, with the reason, bound for `<topic>.dlq`."""

    source: RawMessage
    stage: str  # decode | media | embed | ...
    reason: str


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    key: bytes
    value: bytes


@dataclass(slots=True)
class BatchResult:
    outputs: list[OutMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Side effects still running (e.g. state saves); awaited before the batch is acked.
    pending_saves: list[asyncio.Future[None]] = field(default_factory=list)
