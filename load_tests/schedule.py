"""The event plan: intended send times, Zipf-skewed users and items, and pre-built payloads.

Everything random is drawn up front from one seeded generator, so a plan is reproducible and
the send loop only concatenates bytes: the generator must not be the bottleneck it measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import orjson

from worker.events import EVENT_TYPES

Arrival = Literal["constant", "poisson"]
BAD_EVENT_TYPE = "not-an-event-type"  # fails the worker's validation: the event goes to the DLQ


def parse_mix(text: str) -> dict[str, float]:
    """'view=0.6,click=0.3,like=0.1' -> weights normalised to sum 1."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, raw = part.strip().partition("=")
        if not sep:
            raise ValueError(f"mix entry {part!r} is not type=weight")
        if name not in EVENT_TYPES:
            raise ValueError(f"unknown event type {name!r}; known: {sorted(EVENT_TYPES)}")
        weight = float(raw)
        if weight < 0:
            raise ValueError(f"mix weight for {name!r} is negative")
        mix[name] = mix.get(name, 0.0) + weight
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("mix weights sum to zero")
    return {name: weight / total for name, weight in mix.items()}


def send_offsets(
    rate: float, duration_s: float, arrival: Arrival, rng: np.random.Generator
) -> np.ndarray:
    """Intended send times in seconds from the start, ascending, all below duration_s."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if arrival == "constant":
        return np.arange(round(rate * duration_s), dtype=np.float64) / rate
    # Poisson process: exponential gaps; draw generously, then cut at the duration.
    expected = rate * duration_s
    gaps = rng.exponential(1.0 / rate, size=int(expected + 6 * np.sqrt(expected) + 16))
    offsets = np.cumsum(gaps) - gaps[0]  # the first event goes out at t=0
    return offsets[offsets < duration_s]


class ZipfSampler:
    """Bounded Zipf over ranks 0..n-1: P(rank k) ∝ (k+1)^-s; s=0 is uniform."""

    def __init__(self, n: int, s: float) -> None:
        if n < 1:
            raise ValueError("need at least one rank")
        if s < 0:
            raise ValueError("Zipf exponent must be >= 0")
        weights = np.arange(1, n + 1, dtype=np.float64) ** -s
        self.cdf = np.cumsum(weights / weights.sum())
        self.cdf[-1] = 1.0  # guard against rounding leaving the last rank unreachable

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.searchsorted(self.cdf, rng.random(size), side="right").astype(np.int64)


@dataclass(frozen=True, slots=True)
class EventIds:
    """Event ids carry the run id so answers from other traffic on a shared topic are ignored."""

    run_id: str

    @property
    def prefix(self) -> str:
        return f"lt-{self.run_id}-"

    def event(self, seq: int) -> str:
        return f"{self.prefix}{seq}"

    def warmup(self, k: int) -> str:
        return f"{self.prefix}w{k}"

    def parse(self, event_id: object) -> int | str | None:
        """seq for a measured event, the id itself for a warm-up event, None for others."""
        if not isinstance(event_id, str) or not event_id.startswith(self.prefix):
            return None
        rest = event_id[len(self.prefix) :]
        if rest.startswith("w"):
            return event_id
        return int(rest) if rest.isdigit() else None


@dataclass(frozen=True)
class EventPlan:
    ids: EventIds
    offsets: np.ndarray  # intended send time of each event, seconds from the start
    keys: list[bytes]  # user id: the message key
    prefixes: list[bytes]  # JSON value up to the timestamp; `payload` appends it
    bad: np.ndarray  # bool: deliberately malformed events, expected in the DLQ
    user_ids: list[str]
    duration_s: float

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def rate(self) -> float:
        return len(self.offsets) / self.duration_s

    def payload(self, seq: int, ts: float) -> bytes:
        """The event's JSON with its `ts`: the intended send time, in epoch seconds."""
        return self.prefixes[seq] + b"%.6f}" % ts

    def warmup_event(self, k: int, ts: float) -> tuple[bytes, bytes]:
        """(key, value) of a well-formed warm-up event for one of the plan's users."""
        user = self.user_ids[k % len(self.user_ids)]
        doc = {
            "event_id": self.ids.warmup(k),
            "user_id": user,
            "item_id": "1",
            "type": "view",
            "value": None,
            "ts": ts,
        }
        return user.encode(), orjson.dumps(doc)


def load_user_ids(users: int) -> list[str]:
    """The ids of a load's `users` users."""
    return [f"load-user-{k}" for k in range(users)]


def build_plan(
    *,
    run_id: str,
    rate: float,
    duration_s: float,
    users: int,
    items: int,
    mix: dict[str, float],
    zipf_users: float = 0.0,
    zipf_items: float = 0.0,
    arrival: Arrival = "constant",
    bad_fraction: float = 0.0,
    seed: int = 0,
) -> EventPlan:
    """Draw every event of a run. Item ids are MovieLens ids "1".."items" (rank 0 = "1")."""
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError("bad_fraction must be within [0, 1]")
    rng = np.random.default_rng(seed)
    offsets = send_offsets(rate, duration_s, arrival, rng)
    n = len(offsets)
    user_rank = ZipfSampler(users, zipf_users).sample(rng, n)
    item_rank = ZipfSampler(items, zipf_items).sample(rng, n)
    types = list(mix)
    type_idx = rng.choice(len(types), size=n, p=np.array([mix[t] for t in types]))
    ratings = rng.integers(1, 6, size=n)
    bad = rng.random(n) < bad_fraction
    ids = EventIds(run_id)
    user_ids = load_user_ids(users)
    keys: list[bytes] = []
    prefixes: list[bytes] = []
    for seq in range(n):
        user = user_ids[user_rank[seq]]
        etype = types[type_idx[seq]]
        doc = {
            "event_id": ids.event(seq),
            "user_id": user,
            "item_id": str(item_rank[seq] + 1),
            "type": BAD_EVENT_TYPE if bad[seq] else etype,
            "value": int(ratings[seq]) if etype == "rating" else None,
        }
        keys.append(user.encode())
        # Drop the closing brace: `payload` appends `"ts":<intended time>}` at send time.
        prefixes.append(orjson.dumps(doc)[:-1] + b',"ts":')
    return EventPlan(ids, offsets, keys, prefixes, bad, user_ids, duration_s)
