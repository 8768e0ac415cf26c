"""Business rules on the embedded store's items: an item-rules message rewrites the rule
fields of an item's payload in place (no re-embedding), and pinned items are found by an
indexed payload filter (worker/rules.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from qdrant_edge import (
    EdgeShard,
    FieldCondition,
    Filter,
    IsEmptyCondition,
    MatchValue,
    ScrollRequest,
    UpdateOperation,
)

from worker.rules import MAX_PINNED, ItemRules, rules_payload
from worker.store.base import ScoredItem
from worker.store.edge_cache import ItemCache
from worker.store.edge_query import PointId
from worker.store.payload import (
    OWN_RULES_FIELD,
    PIN_SLOT_FIELD,
    RULE_OVERRIDE_FIELD,
    SCORED_FIELDS,
    VECTOR_NAME,
    item_point_ids,
    named_vector,
    own_rules_of,
    scored_item,
)

T = TypeVar("T")


class ItemRuleUpdates:
    """Mixed into EdgeVectorStore, whose state and helpers it uses."""

    _items: EdgeShard | None
    _pending: EdgeShard | None
    _item_cache: ItemCache

    if TYPE_CHECKING:

        def _shards(self) -> tuple[EdgeShard, EdgeShard]: ...
        async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T: ...
        def _record_writes(self, pending: bool, item_ids: Sequence[str]) -> None: ...

    async def get_own_rules(self, item_ids: Sequence[str]) -> dict[str, ItemRules]:
        """The own rules (from their items messages) of the items that exist."""
        if not item_ids:
            return {}
        points = item_point_ids(item_ids)
        records = await self._run(
            self._shards()[0].retrieve,
            list[PointId](points),
            with_payload=[OWN_RULES_FIELD],
            with_vector=False,
        )
        return {points[int(r.id)]: own_rules_of(r.payload or {}) for r in records}

    async def set_item_rules(
        self, rules: Mapping[str, ItemRules], overridden: Collection[str] = ()
    ) -> None:
        """Rewrite the rules in effect of items that exist (others are left alone: an item
        written later gets its rules when it is written)."""
        existing = await self.get_own_rules(list(rules))  # the engine refuses unknown ids
        if not existing:
            return
        ops = [
            UpdateOperation.set_payload(
                list[PointId]([point]), rules_payload(rules[item_id], item_id in overridden)
            )
            for point, item_id in item_point_ids(list(existing)).items()
        ]
        active, pending = self._shards()[0], self._pending

        def apply() -> None:
            for op in ops:
                active.update(op)
            for op in ops if pending is not None else ():
                # A re-embed may not have reached the item yet: it writes the rules then.
                with contextlib.suppress(Exception):
                    pending.update(op)  # type: ignore[union-attr]

        await self._run(apply)
        for point in item_point_ids(list(existing)):
            self._item_cache.discard(point)
        self._record_writes(False, list(existing))
        self._record_writes(True, list(existing))

    async def overridden_items(self) -> list[str]:
        ids: list[str] = []
        offset = None
        while True:
            request = ScrollRequest(
                offset=offset,
                limit=1000,
                filter=Filter(must=[FieldCondition(RULE_OVERRIDE_FIELD, match=MatchValue(1))]),
                with_payload=["item_id"],
                with_vector=False,
            )
            records, offset = await self._run(self._shards()[0].scroll, request)
            ids += [str(r.payload["item_id"]) for r in records if r.payload]
            if offset is None:
                return ids

    async def pinned_items(self) -> list[ScoredItem]:
        """Items with a pinned slot, with their vectors."""
        request = ScrollRequest(
            limit=MAX_PINNED,
            filter=Filter(must_not=[IsEmptyCondition(PIN_SLOT_FIELD)]),
            with_payload=SCORED_FIELDS,
            with_vector=[VECTOR_NAME],
        )
        records, _ = await self._run(self._shards()[0].scroll, request)
        return [scored_item(r.payload, 0.0, named_vector(r.vector)) for r in records if r.payload]
