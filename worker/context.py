"""The one object a batch handler takes: clients, signals, settings, clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.erasure import ErasureLog
from worker.item_rules import RuleBook
from worker.media import MediaFetcher
from worker.ranking import RankingParams
from worker.settings import Settings
from worker.signals import Signals
from worker.store import VectorStore
from worker.triton import TritonClient
from worker.variants import Variants


@dataclass(slots=True)
class Context:
    settings: Settings
    triton: TritonClient
    store: VectorStore
    media: MediaFetcher
    signals: Signals
    # The served model versions (refreshed by the runtime: Triton may swap them).
    model_version: str = ""
    clock: Callable[[], float] = field(default=time.time)
    # The user-events partitions this worker owns, when its users live in its own embedded
    # store (new items are pushed to those users only); None: every user (a shared store).
    owned_partitions: set[int] | None = None
    # Every partition of the user-events topic, with `owned_partitions` (empty: not known).
    event_partitions: set[int] = field(default_factory=set)
    # The item-rules topic's rules and the pinned items (worker/item_rules.py).
    rules: RuleBook = field(default_factory=RuleBook)
    # The A/B variants of VARIANTS (one, "default", when unset), with their ranking params.
    variants: Variants = field(init=False)
    # Users erased and up to when (from user-erasures: worker/erasure.py).
    erasures: ErasureLog = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.variants = Variants(settings.variants, RankingParams.from_settings(settings))
        key = settings.user_hash_key.get_secret_value().encode() if settings.user_hash_key else b""
        self.erasures = ErasureLog(key)

    async def probe(self) -> None:
        """Raise an InfrastructureError if Triton or the store cannot answer right now."""
        await self.triton.probe()
        await self.store.probe()
