"""Where business rules reach the worker: the `item-rules` topic, read whole by every
worker (no group: each worker's store needs every rule), and the pinned items.

A rule message's fields override the item's own (worker/rules.py) while the rule exists; a
tombstone drops it. On each message the store's copy of the item's rules in effect is
rewritten (one store call per chunk of messages), between two items batches so that no
write of the item races it. Items written later get the rules in effect when they are
written (ingest's `item_record`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from worker.changelog.reader import ChangelogReader
from worker.errors import InfrastructureError
from worker.metrics import Metrics
from worker.records import RawMessage
from worker.rules import ItemRules, overlay, parse_rule_fields
from worker.settings import Settings
from worker.store import ScoredItem, StoreError, VectorStore
from worker.validation import InvalidMessage, check_id, check_unknown_fields, decode_json_object

log = logging.getLogger(__name__)
# Pinned items are re-read from the store at most this often (one filtered scroll).
PINS_MAX_AGE_S = 1.0
RETRY_S = 1.0


class RuleBook:
    """The item-rules topic's latest rule per item, and the pinned items (cached)."""

    def __init__(self) -> None:
        self.overrides: dict[str, dict[str, Any]] = {}
        self._pins: list[ScoredItem] = []
        self._pins_read_at = -float("inf")

    def effective(self, item_id: str, own: ItemRules) -> ItemRules:
        return overlay(own, self.overrides.get(item_id))

    def absorb(self, key: bytes | None, value: bytes | None) -> str:
        """One item-rules message -> the item it changes; InvalidMessage names what is
        wrong with a bad one."""
        if not key:
            raise InvalidMessage("an item-rules message needs the item_id as its key")
        item_id = check_id(key.decode("utf-8", "replace"), "key")
        if value is None:
            self.overrides.pop(item_id, None)
            return item_id
        doc = decode_json_object(value)
        check_unknown_fields(doc, {"item_id", "available", "expires_at", "boost", "pinned"})
        if doc.get("item_id", item_id) != item_id:
            raise InvalidMessage("message key must equal item_id")
        self.overrides[item_id] = parse_rule_fields(doc)
        return item_id

    async def pinned(self, store: VectorStore, now: float) -> list[ScoredItem]:
        """The pinned items in effect (re-read when older than PINS_MAX_AGE_S)."""
        if now - self._pins_read_at >= PINS_MAX_AGE_S:
            self._pins = await store.pinned_items()
            self._pins_read_at = now
        return self._pins

    def forget_pins(self) -> None:
        self._pins_read_at = -float("inf")


class ItemRulesFeed:
    def __init__(
        self,
        settings: Settings,
        rules: RuleBook,
        store: VectorStore,
        metrics: Metrics,
        between_item_batches: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    ) -> None:
        self.rules = rules
        self.store = store
        self.metrics = metrics
        self._between = between_item_batches
        self.reader = ChangelogReader.of_feed(
            settings, settings.item_rules_topic, self._apply, metrics
        )

    async def start(self) -> None:
        """Every rule up to the topic's end, applied before the first batch; items the
        store holds an override for that no rule names any more (its tombstone compacted
        away while this store was down) go back to their own rules."""
        await self.reader.start_whole()
        stale = [i for i in await self.store.overridden_items() if i not in self.rules.overrides]
        if stale:
            log.info("%d items lost their item-rules override while stopped", len(stale))
            await self._rewrite(stale)

    async def _apply(self, records: Sequence[RawMessage]) -> None:
        changed: set[str] = set()
        for record in records:
            try:
                changed.add(self.rules.absorb(record.key, record.value))
            except InvalidMessage as exc:
                # A bad rule is skipped (it blocks nothing), logged and counted.
                log.warning("item-rules offset %d skipped: %s", record.offset, exc)
                self.metrics.messages_failed.labels(record.topic, "decode").inc()
        if changed:
            await self._rewrite(sorted(changed))

    async def _rewrite(self, item_ids: list[str]) -> None:
        """The store's rules in effect for these items, retried while the store fails."""
        while True:
            try:
                async with self._between():
                    own = await self.store.get_own_rules(item_ids)
                    effective = {i: self.rules.effective(i, rules) for i, rules in own.items()}
                    overridden = [i for i in effective if effective[i] != own[i]]
                    await self.store.set_item_rules(effective, overridden)
                self.rules.forget_pins()
                return
            except InfrastructureError as exc:
                log.warning("item rules not applied yet (%s); retrying", exc)
                await asyncio.sleep(RETRY_S)
            except StoreError:
                log.exception("item rules of %d items could not be applied", len(item_ids))
                return
