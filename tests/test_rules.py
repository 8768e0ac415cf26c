import numpy as np
import pytest

from worker.answer import place_pins
from worker.candidates import CandidateFilter, merge_candidates
from worker.item_rules import RuleBook
from worker.ranking import boosted
from worker.rules import (
    DEFAULT_RULES,
    ItemRules,
    Pin,
    overlay,
    own_rules,
    parse_rule_fields,
    rules_from_payload,
    rules_payload,
)
from worker.store import Scored, ScoredItem
from worker.validation import InvalidMessage


def _item(
    item_id: str, score: float = 0.5, category: str | None = None, **rules: object
) -> ScoredItem:
    return ScoredItem(
        item_id, score, category, rules=ItemRules(**rules) if rules else DEFAULT_RULES
    )  # type: ignore[arg-type]


def test_an_item_without_rule_fields_has_the_defaults() -> None:
    assert own_rules({"item_id": "a", "title": "t"}) is not None
    assert own_rules({"item_id": "a"}) == DEFAULT_RULES


def test_rule_fields_are_parsed_and_a_rule_overrides_only_what_it_names() -> None:
    own = own_rules({"boost": 2, "expires_at": "2030-01-01T00:00:00Z"})
    assert own.boost == 2.0 and own.expires_at == pytest.approx(1893456000.0)
    rule = parse_rule_fields({"available": False, "pinned": {"slot": 2, "category": "horror"}})
    effective = overlay(own, rule)
    assert effective == ItemRules(False, own.expires_at, 2.0, Pin(2, "horror"))
    assert overlay(own, None) is own


@pytest.mark.parametrize(
    "doc",
    [
        {"available": "no"},
        {"boost": 0},
        {"boost": True},
        {"boost": float("inf")},
        {"pinned": {"slot": 0}},
        {"pinned": {"slot": 1, "colour": "red"}},
        {"pinned": 3},
        {"expires_at": "tomorrow"},
    ],
)
def test_bad_rule_fields_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(InvalidMessage):
        parse_rule_fields(doc)


def test_unavailable_and_expired_items_are_blocked_from_their_time() -> None:
    assert ItemRules(available=False).blocks(0.0)
    assert not ItemRules(expires_at=10.0).blocks(9.9) and ItemRules(expires_at=10.0).blocks(10.0)
    assert not DEFAULT_RULES.blocks(1e12)


def test_rules_round_trip_through_the_payload() -> None:
    rules = ItemRules(False, 5.0, 1.5, Pin(3, None))
    assert rules_from_payload(rules_payload(rules)) == rules
    assert rules_from_payload(rules_payload(DEFAULT_RULES)) is DEFAULT_RULES


def test_a_rule_book_keeps_the_latest_rule_and_a_tombstone_drops_it() -> None:
    book = RuleBook()
    assert book.absorb(b"a", b'{"item_id": "a", "available": false}') == "a"
    assert book.effective("a", DEFAULT_RULES) == ItemRules(available=False)
    book.absorb(b"a", b'{"boost": 3}')
    assert book.effective("a", DEFAULT_RULES) == ItemRules(boost=3.0)
    book.absorb(b"a", None)
    assert book.effective("a", ItemRules(boost=2.0)) == ItemRules(boost=2.0)
    with pytest.raises(InvalidMessage):
        book.absorb(b"a", b'{"item_id": "b", "boost": 2}')


def test_merging_candidates_leaves_out_blocked_extra_items() -> None:
    extra = [_item("ok"), _item("off", available=False), _item("old", expires_at=5.0)]
    allowed = CandidateFilter(available_at=10.0)
    merged = merge_candidates(Scored([], []), Scored.of(extra), [], allowed)
    assert [i.item_id for i in merged.items] == ["ok"]


def test_a_boost_lifts_an_item_whatever_the_sign_of_its_score() -> None:
    boosts = np.array([2.0, 2.0, 1.0])
    assert boosted(np.array([0.5, -0.4, 0.3]), boosts).tolist() == [1.0, -0.2, 0.3]


def test_pins_take_their_slots_and_never_bring_back_what_is_excluded() -> None:
    listed = [_item(f"i{n}", 1.0 - n / 10) for n in range(5)]
    top = _item("top", pin=Pin(1))
    third = _item("third", pin=Pin(3))
    seen = _item("seen", pin=Pin(2))
    gone = _item("gone", pin=Pin(2), available=False)
    out = place_pins(
        listed, [third, top, seen, gone], 5, CandidateFilter(available_at=1.0), ["seen"]
    )
    assert [i.item_id for i in out] == ["top", "i0", "third", "i1", "i2"]


def test_a_category_pin_goes_only_in_lists_of_its_category() -> None:
    listed = [_item("a", category="horror"), _item("b", category="horror")]
    pin = _item("p", category="horror", pin=Pin(1, "horror"))
    anywhere = place_pins(listed, [pin], 3, CandidateFilter(), [])
    horror = place_pins(listed, [pin], 3, CandidateFilter(categories=("horror",)), [])
    assert [i.item_id for i in anywhere] == ["a", "b"]
    assert [i.item_id for i in horror] == ["p", "a", "b"]
