"""Business rules on the embedded store's items: an item-rules message rewrites the rule
fields of an item's payload in place (no re-embedding), and pinned items are found by an
indexed payload filter (worker/rules.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from qdrant_edge import EdgeShard

from worker.rules import MAX_PINNED, ItemRules, rules_payload
from worker.store.base import ScoredItem
from worker.store.edge_cache import ItemCache
from worker.store.edge_items import Items, Scroll
from worker.store.exact_index import ExactIndex
from worker.store.payload import (
    OWN_RULES_FIELD,
    SCORED_FIELDS,
    item_point_ids,
    own_rules_of,
    scored_item,
)

T = TypeVar("T")


class ItemRuleUpdates:
    """Mixed into EdgeVectorStore, whose state and helpers it uses."""

    _items: Items | None
    _pending: Items | None
    _item_cache: ItemCache
    _exact: ExactIndex | None

    if TYPE_CHECKING:

        def _shards(self) -> tuple[Items, EdgeShard]: ...
        async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T: ...
        def _record_writes(self, pending: bool, item_ids: Sequence[str]) -> None: ...

    async def get_own_rules(self, item_ids: Sequence[str]) -> dict[str, ItemRules]:
        """The own rules (from their items messages) of the items that exist."""
        if not item_ids:
            return {}
        points = item_point_ids(item_ids)
        active = self._shards()[0]
        records = await self._run(active.retrieve, list(points), [OWN_RULES_FIELD], False)
        return {points[point]: own_rules_of(payload or {}) for point, payload, _ in records}

    async def set_item_rules(
        self, rules: Mapping[str, ItemRules], overridden: Collection[str] = ()
    ) -> None:
        """Rewrite the rules in effect of items that exist (others are left alone: an item
        written later gets its rules when it is written)."""
        existing = await self.get_own_rules(list(rules))  # the engine refuses unknown ids
        if not existing:
            return
        payloads = [
            (point, rules_payload(rules[item_id], item_id in overridden))
            for point, item_id in item_point_ids(list(existing)).items()
        ]
        await self._run(self._shards()[0].set_payloads, payloads, False)
        if self._pending is not None:
            # A re-embed may not have reached the item yet: it writes the rules then.
            await self._run(self._pending.set_payloads, payloads, True)
        for point, item_id in item_point_ids(list(existing)).items():
            self._item_cache.discard(point)
            if self._exact is not None:
                self._exact.set_rules(point, rules[item_id])
        self._record_writes(False, list(existing))
        self._record_writes(True, list(existing))

    async def overridden_items(self) -> list[str]:
        ids: list[str] = []
        offset = None
        while True:
            request = Scroll("overridden", 1000, ["item_id"], offset=offset)
            records, offset = await self._run(self._shards()[0].scroll, request)
            ids += [str(payload["item_id"]) for _, payload, _ in records if payload]
            if offset is None:
                return ids

    async def pinned_items(self) -> list[ScoredItem]:
        """Items with a pinned slot, with their vectors."""
        request = Scroll("pinned", MAX_PINNED, SCORED_FIELDS, with_vector=True)
        records, _ = await self._run(self._shards()[0].scroll, request)
        return [scored_item(payload, 0.0, vector) for _, payload, vector in records if payload]
