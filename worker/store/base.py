"""The vector-store contract the worker codes against.

Two implementations honour it: embedded Qdrant Edge (`edge.py`, the default) and a
Qdrant server through `AsyncQdrantClient` (`server.py`). Both are exercised by the same
contract tests. Point ids are derived from item_id / user_id so replays are idempotent.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from worker.errors import InfrastructureError
from worker.rules import DEFAULT_RULES, ItemRules

# Fixed namespace: point ids must stay stable across releases, or replays would duplicate.
_ID_NAMESPACE = uuid.UUID("8f5b0d4e-55a3-4c39-9a57-0c1f7f3e2a61")


class StoreError(RuntimeError):
    """A vector-store operation failed on its request (it may be the request's data)."""


class StoreUnavailable(StoreError, InfrastructureError):
    """The store could not be reached, timed out or is closed: retried, never the data's
    fault."""

    dependency = "qdrant"


def point_id(kind: str, key: str) -> int:
    """Deterministic 63-bit point id for an item or user key (the top bits of a UUIDv5;
    "item"/"user" keeps the spaces apart; collisions: ~1e-6 at ten million keys).

    Integers, not UUIDs: the embedded engine hands every hit's UUID back as a new
    `uuid.UUID` object (measured: 34 searches of 50 hits took 17.7 ms with UUID ids, 5.0 ms
    with integer ids). Cached: every search derives the ids of all the items a user has seen."""
    return _POINT_IDS[kind][key]


def point_ids(kind: str, keys: Iterable[str]) -> set[int]:
    """The point ids of these keys: a user's seen items, excluded from each of its searches
    (1,000 of them: 54 µs, against 147 through `functools.lru_cache`)."""
    return set(map(_POINT_IDS[kind].__getitem__, keys))


class _PointIds(dict[str, int]):
    """key -> point id of one kind, derived on first use; emptied when it reaches
    POINT_ID_CACHE keys (a dict lookup is a third of an `lru_cache` call's cost)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def __missing__(self, key: str) -> int:
        if len(self) >= POINT_ID_CACHE:
            self.clear()
        derived = self[key] = uuid.uuid5(_ID_NAMESPACE, f"{self.kind}:{key}").int >> 65
        return derived


POINT_ID_CACHE = 200_000
_POINT_IDS = {kind: _PointIds(kind) for kind in ("item", "user")}


@dataclass(frozen=True, slots=True)
class ItemRecord:
    item_id: str
    vector: np.ndarray  # float32, shape (dim,), unit length
    title: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    created_at: float = 0.0  # epoch seconds
    popularity: float = 0.0
    model_version: str = ""
    # Business rules in effect (the item's own, overlaid by an item-rules message), and the
    # item's own (from its items message: kept to fall back on when the rule goes).
    rules: ItemRules = DEFAULT_RULES
    own_rules: ItemRules = DEFAULT_RULES


class Interaction(NamedTuple):
    """One remembered event in a user's history. A named tuple, not a dataclass: a state
    read builds one per remembered event, and `_make` builds them in C (measured: 64 users
    with 1,000-event histories read in 1/3 of the time)."""

    item_id: str
    type: str
    weight: float  # signed event weight (negative feedback < 0)
    ts: float  # epoch seconds
    event_id: str = ""


@dataclass(slots=True)
class UserState:
    user_id: str
    history: list[Interaction] = field(default_factory=list)  # oldest first, bounded
    seen: list[str] = field(default_factory=list)  # item ids to exclude, bounded, oldest first
    vector: np.ndarray | None = None  # float32 unit vector, None until first computed
    updated_at: float = 0.0
    # 64-bit digests of the applied event ids (little-endian uint64s, oldest first, as many
    # as the seen window): redeliveries are recognised after they leave the history.
    event_keys: bytes = b""
    # The user-events partition of the user's events (-1: unknown): with the embedded store
    # a worker pushes new items only to the users of the partitions it owns.
    partition: int = -1
    # The item space `vector` was made in (see the store's `item_space`).
    item_space: str = ""
    # The latest list answered to the user's events, as the read API returns it (JSON; ""
    # until the first answer): see worker/recommendations.py `stored_list`.
    latest: str = ""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    vector: np.ndarray
    limit: int
    exclude_item_ids: Sequence[str] = ()
    categories: Sequence[str] | None = None  # keep only these categories when given
    created_after: float | None = None  # freshness window, epoch seconds
    # Leave out items unavailable or expired at this time (epoch seconds; None: no check).
    available_at: float | None = None
    with_vectors: bool = False  # return each hit's vector (re-ranking for diversity needs it)


# Not frozen: a frozen dataclass's __init__ costs ~2 µs against ~0.4 µs, and the ranking
# makes ~60 of these per user per batch. Treat it as a value all the same: copies
# (`with_score`) rather than changes.
@dataclass(slots=True)
class ScoredItem:
    item_id: str
    score: float
    category: str | None = None
    tags: tuple[str, ...] = ()
    created_at: float = 0.0
    popularity: float = 0.0
    # Set when the request asked for vectors (and by `get_items`); not part of equality.
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    rules: ItemRules = DEFAULT_RULES  # business rules in effect (worker/rules.py)

    def with_score(self, score: float, *, keep_vector: bool = True) -> ScoredItem:
        """A copy with another score. Not dataclasses.replace: that costs ~20 µs against
        ~1 µs, and this runs for every candidate of every user in a batch."""
        vector = self.vector if keep_vector else None
        return ScoredItem(
            self.item_id,
            score,
            self.category,
            self.tags,
            self.created_at,
            self.popularity,
            vector,
            self.rules,
        )


class Scored(NamedTuple):
    """Items with their scores beside them (a search's cosines, later the ranking's blended
    scores): the items are shared, never copied per hit or per user (a copy costs ~0.7 µs,
    and a batch's users have ~100 candidates each), so an item's own `score` means nothing
    here. Only the k items a user is finally listed get copies carrying their scores."""

    items: list[ScoredItem]
    scores: list[float]

    @classmethod
    def of(cls, items: Sequence[ScoredItem]) -> Scored:
        """Items scored as they are (search hits: their cosines)."""
        return cls(list(items), [item.score for item in items])


class VectorStore(Protocol):
    """Async facade over a vector store. Every method is batched: one call per micro-batch."""

    dim: int

    @property
    def item_space(self) -> str:
        """The item space of the vectors `search_items` searches ("": not known)."""

    def holds_item_space(self, space: str) -> bool:
        """Whether `upsert_items` keeps items whose vectors are of `space`."""

    async def open(self) -> None:
        """Create the collections if missing (idempotent)."""

    async def close(self) -> None: ...

    async def upsert_items(self, items: Sequence[ItemRecord]) -> None: ...

    async def delete_items(self, item_ids: Sequence[str]) -> None: ...

    async def get_item_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of the items that exist; unknown ids are simply absent."""

    async def get_items(self, item_ids: Sequence[str]) -> dict[str, ScoredItem]:
        """Payload and vector of the items that exist (score 0: the caller scores them);
        unknown ids are absent."""

    async def count_items(self) -> int: ...

    async def get_own_rules(self, item_ids: Sequence[str]) -> dict[str, ItemRules]:
        """The rules the items that exist have from their items messages."""

    async def set_item_rules(
        self, rules: Mapping[str, ItemRules], overridden: Collection[str] = ()
    ) -> None:
        """Rewrite the rules in effect of the items that exist (unknown ids are skipped);
        `overridden`: those whose rules come from an item-rules message."""

    async def overridden_items(self) -> list[str]:
        """The items whose rules in effect came from an item-rules message."""

    async def pinned_items(self) -> list[ScoredItem]:
        """Items with a pinned slot in effect (with their vectors)."""

    async def probe(self) -> None:
        """One cheap request; StoreUnavailable when the store cannot answer."""

    async def get_users(
        self, user_ids: Sequence[str], *, with_vectors: bool = True
    ) -> dict[str, UserState]:
        """States of the users that exist; unknown ids are absent. `with_vectors=False`:
        each state's vector may be left None (a cheaper read, for a caller that makes the
        vector afresh)."""

    async def upsert_users(self, users: Sequence[UserState]) -> None: ...

    async def delete_users(self, user_ids: Sequence[str]) -> None:
        """Delete the users' states (erasure); unknown ids are no error."""

    async def flush_users(self) -> None:
        """Make the users' states written so far survive a crash (a checkpoint of what the
        store holds is saved only after this)."""

    async def search_items(self, requests: Sequence[SearchRequest]) -> list[list[ScoredItem]]:
        """One batched nearest-neighbour query; result i answers request i, best first."""

    async def search_candidates(self, requests: Sequence[SearchRequest]) -> list[Scored]:
        """`search_items`' answers as `Scored` (the events path's form): the same hits and
        scores, each item possibly an object shared with other answers and batches."""

    async def search_users(
        self,
        vectors: Sequence[np.ndarray],
        limit: int,
        partitions: Sequence[int] | None = None,
        item_space: str | None = None,
    ) -> list[list[tuple[str, float]]]:
        """One batched query over user vectors: result i holds the (user_id, cosine) of the
        `limit` users nearest vector i, best first. Users without a vector never match;
        with `partitions`, only users of those events partitions do; with `item_space`,
        only users whose vector was made in that item space."""
