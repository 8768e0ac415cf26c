"""Matches answers to events and keeps the books: every event sent ends up matched, dead-lettered,
failed to send, or missing.

Latency is measured from each event's INTENDED send time, so time an event spent waiting in an
overloaded generator, producer or worker counts against the system (no coordinated omission).
All times are seconds on the run's own clock (0 = first intended send).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import orjson

from load_tests.histogram import LatencyHistogram
from load_tests.schedule import EventIds

PENDING, MATCHED, DEAD_LETTERED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the timeline: counts are cumulative, latencies cover this interval only."""

    t: float
    sent: int
    answered: int  # matched + dead-lettered
    lag: int  # sent - answered: events still in flight
    interval_count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class Matcher:
    def __init__(self, ids: EventIds, offsets: np.ndarray, bad: np.ndarray, late_s: float) -> None:
        self.ids = ids
        self.offsets = offsets
        self.bad = bad
        self.late_s = late_s
        n = len(offsets)
        self.status = np.zeros(n, dtype=np.int8)
        self.send_failed = np.zeros(n, dtype=bool)
        self.sent = 0  # events handed to the producer, in plan order
        self.answered = 0
        self.late = 0
        self.duplicates = 0
        self.response_errors = 0  # unreadable answers, or answers naming unknown events
        self.foreign = 0  # records of other traffic on shared topics
        self.dlq_stages: Counter[str] = Counter()
        self.warmup_answered: set[str] = set()
        self.latency = LatencyHistogram()
        self.send_lag = LatencyHistogram()
        self._interval: list[float] = []  # this sampling interval's latencies, seconds
        self.timeline: list[Sample] = []

    # --- send side --------------------------------------------------------------------------
    def on_sent(self, seq: int, now: float) -> None:
        self.sent = seq + 1
        self.send_lag.record_s(now - self.offsets[seq])

    def on_send_failed(self, seq: int) -> None:
        self.send_failed[seq] = True

    # --- read side --------------------------------------------------------------------------
    def on_recommendation(self, value: bytes | None, now: float) -> None:
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            self.response_errors += 1
            return
        event_ids = doc.get("event_ids")
        if not isinstance(event_ids, list) or not event_ids:
            event_ids = [doc.get("event_id")]  # producers that do not coalesce
        for event_id in event_ids:
            self._resolve(self.ids.parse(event_id), MATCHED, now)

    def on_dead_letter(self, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """A DLQ record carries the original event bytes; its event id says whose it is."""
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            doc = None
        parsed = self.ids.parse(doc.get("event_id")) if isinstance(doc, dict) else None
        if parsed is None:
            self.foreign += 1
            return
        stage = dict(headers).get("dlq.stage", b"?").decode("utf-8", "replace")
        self.dlq_stages[stage] += 1
        self._resolve(parsed, DEAD_LETTERED, None)

    def _resolve(self, parsed: int | str | None, outcome: int, now: float | None) -> None:
        if parsed is None:
            self.foreign += 1
        elif isinstance(parsed, str):
            self.warmup_answered.add(parsed)
        elif parsed >= len(self.status):
            self.response_errors += 1
        elif self.status[parsed] != PENDING:
            self.duplicates += 1  # at-least-once redelivery, or both answered and DLQ'd
        else:
            self.status[parsed] = outcome
            self.answered += 1
            if now is not None:
                latency = now - self.offsets[parsed]
                self.latency.record_s(latency)
                self._interval.append(latency)
                if latency > self.late_s:
                    self.late += 1

    # --- reporting --------------------------------------------------------------------------
    @property
    def lag(self) -> int:
        return self.sent - self.answered

    def settled(self) -> bool:
        """Every event handed to the producer is answered, dead-lettered or failed to send."""
        handed = slice(0, self.sent)
        return bool(np.all((self.status[handed] != PENDING) | self.send_failed[handed]))

    def sample(self, t: float) -> Sample:
        """Close the current interval. Its percentiles are exact (numpy over the interval's
        latencies); the run's totals come from the HDR histogram."""
        p50 = p99 = peak = None
        if self._interval:
            values = np.array(self._interval) * 1000.0
            p50, p99 = (round(float(v), 3) for v in np.percentile(values, [50, 99]))
            peak = round(float(values.max()), 3)
        point = Sample(
            t=round(t, 3),
            sent=self.sent,
            answered=self.answered,
            lag=self.lag,
            interval_count=len(self._interval),
            p50_ms=p50,
            p99_ms=p99,
            max_ms=peak,
        )
        self._interval = []
        self.timeline.append(point)
        return point

    def counts(self) -> dict[str, int]:
        """The accounting: matched + dlq + send_errors + missing == sent."""
        handed = slice(0, self.sent)
        status, bad = self.status[handed], self.bad[handed]
        failed = self.send_failed[handed] & (status == PENDING)
        dlq = status == DEAD_LETTERED
        return {
            "scheduled": len(self.status),
            "sent": self.sent,
            "matched": int(np.count_nonzero(status == MATCHED)),
            "dlq": int(np.count_nonzero(dlq)),
            "send_errors": int(np.count_nonzero(failed)),
            "missing": int(np.count_nonzero((status == PENDING) & ~failed)),
            "bad_sent": int(np.count_nonzero(bad)),
            "dlq_unexpected": int(np.count_nonzero(dlq & ~bad)),  # good events dead-lettered
            "bad_answered": int(np.count_nonzero((status == MATCHED) & bad)),
            "late": self.late,
            "duplicates": self.duplicates,
            "response_errors": self.response_errors,
            "foreign": self.foreign,
        }
