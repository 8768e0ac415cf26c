"""What the read API answers, from the worker's store and signals (no HTTP here).

GET /recommendations/{user_id}: the list last answered to the user's events, as stored in
the user's state at that answer's checkpoint, narrowed by the request; `fresh` (or a user
with no stored list: a new user) computes one through the events path instead, without
recording anything. GET /items/{item_id}/similar: the items nearest an item's vector.
"""

from __future__ import annotations

from typing import Any

import orjson

from worker.context import Context
from worker.recommend import ReadQuery, recommend_now
from worker.store import SearchRequest


class UnknownItem(LookupError):
    """The item is not in the catalogue (HTTP 404)."""


def narrowed(doc: dict[str, Any], query: ReadQuery, default_k: int) -> dict[str, Any]:
    """A stored list narrowed to the request (pure): excluded ids and other categories
    dropped, then cut to k."""
    excluded = set(query.exclude)
    items = [
        item
        for item in doc["items"]
        if item["item_id"] not in excluded
        and (query.categories is None or item.get("category") in query.categories)
    ]
    return {**doc, "items": items[: query.k or default_k]}


class Reads:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def recommendations(
        self, user_id: str, query: ReadQuery, *, fresh: bool
    ) -> dict[str, Any]:
        ctx = self.ctx
        if not fresh:
            state = (await ctx.store.get_users([user_id])).get(user_id)
            if state is not None and state.latest:
                stored = await self._still_listable(orjson.loads(state.latest))
                doc = narrowed(stored, query, ctx.settings.recommendations_k)
                return {**doc, "fresh": False, "cold_start": stored["strategy"] == "trending"}
        doc = await recommend_now(user_id, ctx, query)
        doc.pop("event_ids", None)
        return {**doc, "fresh": True, "cold_start": doc["strategy"] == "trending"}

    async def _still_listable(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A stored list without the items deleted, made unavailable or expired since it
        was answered (one store call: the business rules apply to stored lists at once)."""
        ids = [item["item_id"] for item in doc["items"]]
        found = await self.ctx.store.get_items(ids)
        now = self.ctx.clock()
        kept = [
            item
            for item in doc["items"]
            if (current := found.get(item["item_id"])) is not None and not current.rules.blocks(now)
        ]
        return {**doc, "items": kept}

    async def similar(self, item_id: str, query: ReadQuery) -> dict[str, Any]:
        ctx = self.ctx
        item = (await ctx.store.get_items([item_id])).get(item_id)
        if item is None or item.vector is None:
            raise UnknownItem(item_id)
        k = query.k or ctx.settings.recommendations_k
        (hits,) = await ctx.store.search_items(
            [
                SearchRequest(
                    item.vector,
                    limit=k,
                    exclude_item_ids=(item_id, *query.exclude),
                    categories=query.categories,
                    available_at=ctx.clock(),
                )
            ]
        )
        return {
            "item_id": item_id,
            "items": [
                {"item_id": h.item_id, "score": round(h.score, 6), "category": h.category}
                for h in hits[:k]
            ],
            "model_version": ctx.model_version,
        }
