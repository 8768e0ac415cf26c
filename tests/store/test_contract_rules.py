"""The business-rules and erasure parts of the store contract, on both implementations."""

from __future__ import annotations

import pytest
from store.test_contract import item, store, unit  # noqa: F401 - the two-backend fixture

from worker.rules import ItemRules, Pin
from worker.store import SearchRequest, UserState, VectorStore

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
]


async def _ids(store: VectorStore, at: float) -> list[str]:  # noqa: F811
    (hits,) = await store.search_items([SearchRequest(unit(1), limit=10, available_at=at)])
    return sorted(h.item_id for h in hits)


async def test_searches_leave_out_unavailable_and_expired_items(store: VectorStore) -> None:  # noqa: F811
    await store.upsert_items(
        [
            item("on", unit(1)),
            item("off", unit(1, 0.1), rules=ItemRules(available=False)),
            item("expiring", unit(1, 0.2), rules=ItemRules(expires_at=100.0)),
        ]
    )
    assert await _ids(store, at=50.0) == ["expiring", "on"]
    assert await _ids(store, at=100.0) == ["on"]
    (everything,) = await store.search_items([SearchRequest(unit(1), limit=10)])
    assert len(everything) == 3, "without available_at nothing is checked"


async def test_rules_are_rewritten_in_place_and_own_rules_kept(store: VectorStore) -> None:  # noqa: F811
    own = ItemRules(boost=2.0)
    await store.upsert_items([item("a", unit(1), rules=own, own_rules=own)])
    await store.set_item_rules({"a": ItemRules(available=False), "unknown": ItemRules()})

    assert await _ids(store, at=0.0) == []
    assert (await store.get_items(["a"]))["a"].rules == ItemRules(available=False)
    assert await store.get_own_rules(["a", "unknown"]) == {"a": own}
    assert await store.count_items() == 1, "rules never create items"


async def test_pinned_items_are_found_with_their_pins(store: VectorStore) -> None:  # noqa: F811
    pin = ItemRules(pin=Pin(1, "horror"))
    await store.upsert_items([item("a", unit(1)), item("p", unit(0, 1), rules=pin)])
    pinned = await store.pinned_items()
    assert [(p.item_id, p.rules) for p in pinned] == [("p", pin)]
    assert pinned[0].vector is not None
    await store.set_item_rules({"p": ItemRules()})
    assert await store.pinned_items() == []


async def test_deleted_users_are_gone_and_others_stay(store: VectorStore) -> None:  # noqa: F811
    await store.upsert_users([UserState("a", vector=unit(1)), UserState("b", vector=unit(0, 1))])
    await store.delete_users(["a", "unknown"])
    assert set(await store.get_users(["a", "b"])) == {"b"}
    assert [u for u, _ in (await store.search_users([unit(1)], 5))[0]] == ["b"]


async def test_items_overridden_by_a_rule_are_found_until_they_are_not(store: VectorStore) -> None:  # noqa: F811
    own = ItemRules(boost=2.0)
    await store.upsert_items(
        [
            item("ruled", unit(1), rules=ItemRules(available=False), own_rules=own),
            item("plain", unit(0, 1), rules=own, own_rules=own),
        ]
    )
    assert await store.overridden_items() == ["ruled"]
    await store.set_item_rules({"plain": ItemRules(pin=Pin(1))}, overridden=["plain"])
    await store.set_item_rules({"ruled": own})
    assert await store.overridden_items() == ["plain"]
