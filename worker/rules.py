"""Business rules on items: availability, expiry, boost and pinned slots (pure).

Sources: an item's own fields on the `items` topic, and the optional compacted
`item-rules` topic (key = item_id), whose fields override the item's own while the rule
exists (a tombstone drops the rule: the item's own fields apply again):
    {"item_id", "available": bool, "expires_at": ts | null, "boost": number > 0,
     "pinned": {"slot": 1.., "category": str | null} | null}
An item's latest rule message replaces its previous one; the fields it names override the
item's own, the others stay the item's own.

Precedence, strongest first (README, Business rules):
  1. never listed: unavailable or expired items, the user's seen items, a request's or an
     event context's exclusions; pins included;
  2. category constraints (settings, event context, request) apply to pins too; a pin with a
     category is placed only in lists constrained to categories that include it;
  3. pinned items take their slots (1 = first), lowest slot first;
  4. `boost` multiplies the blended score before diversity (MMR) orders the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from worker.validation import InvalidMessage, check_label, parse_timestamp

RULE_FIELDS = ("available", "expires_at", "boost", "pinned")
MAX_BOOST = 1000.0
MAX_SLOT = 1000
# Pins are few by nature (slots at the top of lists); more than this are not looked at.
MAX_PINNED = 1000


@dataclass(frozen=True, slots=True)
class Pin:
    slot: int  # 1-based position in the list
    category: str | None = None  # None: every list


@dataclass(frozen=True, slots=True)
class ItemRules:
    available: bool = True
    expires_at: float | None = None  # epoch seconds
    boost: float = 1.0
    pin: Pin | None = None

    @property
    def blocked_from(self) -> float | None:
        """From when the item may not be listed (0: unavailable; None: no limit): one
        number, so a store filters both rules with one indexed range condition."""
        return 0.0 if not self.available else self.expires_at

    def blocks(self, now: float) -> bool:
        """Never recommended at `now` (unavailable, or expired)."""
        return self.blocked_from is not None and self.blocked_from <= now


DEFAULT_RULES = ItemRules()


def parse_rule_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The rule fields `doc` names, validated (InvalidMessage names a bad one)."""
    fields: dict[str, Any] = {}
    if "available" in doc:
        if not isinstance(doc["available"], bool):
            raise InvalidMessage("'available' must be true or false")
        fields["available"] = doc["available"]
    if "expires_at" in doc:
        raw = doc["expires_at"]
        fields["expires_at"] = None if raw is None else parse_timestamp(raw, "expires_at")
    if "boost" in doc:
        boost = doc["boost"]
        if (
            isinstance(boost, bool)
            or not isinstance(boost, int | float)
            or not math.isfinite(boost)
            or not 0 < boost <= MAX_BOOST
        ):
            raise InvalidMessage(f"'boost' must be a number above 0 and at most {MAX_BOOST:g}")
        fields["boost"] = float(boost)
    if "pinned" in doc:
        fields["pin"] = _pin(doc["pinned"])
    return fields


def _pin(raw: object) -> Pin | None:
    if raw is None:
        return None
    slot = raw.get("slot") if isinstance(raw, dict) else None
    if (
        not isinstance(raw, dict)
        or set(raw) - {"slot", "category"}
        or isinstance(slot, bool)
        or not isinstance(slot, int)
        or not 1 <= slot <= MAX_SLOT
    ):
        raise InvalidMessage(
            f'\'pinned\' must be null or {{"slot": 1-{MAX_SLOT}, "category": optional}}'
        )
    category = raw.get("category")
    return Pin(slot, None if category is None else check_label(category, "pinned.category"))


def own_rules(doc: Mapping[str, Any]) -> ItemRules:
    """An item message's rules: the fields it names, defaults for the rest."""
    return replace(DEFAULT_RULES, **parse_rule_fields(doc))


def overlay(own: ItemRules, override: Mapping[str, Any] | None) -> ItemRules:
    """The effective rules: the override's fields (an item-rules message) over the own."""
    return replace(own, **override) if override else own


def rules_payload(rules: ItemRules, overridden: bool = False) -> dict[str, Any]:
    """Flat payload fields (the stores filter on `blocked_from`); `rule_override` marks an
    item whose rules in effect come from an item-rules message (a start finds those whose
    rule is gone: its tombstone may have been compacted away)."""
    return {
        "rule_override": int(overridden),
        "blocked_from": rules.blocked_from,
        "available": rules.available,
        "expires_at": rules.expires_at,
        "boost": rules.boost,
        "pin_slot": rules.pin.slot if rules.pin else None,
        "pin_category": rules.pin.category if rules.pin else None,
    }


def rules_from_payload(payload: Mapping[str, Any]) -> ItemRules:
    slot = payload.get("pin_slot")
    rules = ItemRules(
        available=payload.get("available", True) is not False,
        expires_at=payload.get("expires_at"),
        boost=float(payload.get("boost") or 1.0),
        pin=Pin(int(slot), payload.get("pin_category")) if slot else None,
    )
    return DEFAULT_RULES if rules == DEFAULT_RULES else rules


def pin_applies(pin: Pin, categories: Sequence[str] | None) -> bool:
    """A global pin goes in every list; a category pin in lists constrained to categories
    that include it."""
    return pin.category is None or (categories is not None and pin.category in categories)
