import re

import pytest

from worker.api.query import ID_PATTERN, LIST_PATTERN, BadRequest, path_id, read_query
from worker.api.reads import narrowed
from worker.recommend import ReadQuery


def test_a_query_narrows_k_categories_and_exclusions() -> None:
    query, fresh = read_query({"k": "3", "categories": "a, b", "exclude": "x,y", "fresh": "true"})
    assert query == ReadQuery(3, ("a", "b"), ("x", "y")) and fresh is True
    assert read_query({}) == (ReadQuery(), False)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"k": "0"}, "'k'"),
        ({"k": "1001"}, "'k'"),
        ({"k": "٣"}, "'k'"),
        ({"fresh": "yes"}, "'fresh'"),
        ({"categories": "a,,b"}, "'categories'"),
        ({"exclude": "a\u200b"}, "'exclude'"),
        ({"exclude": "a," * 5000}, "'exclude'"),
        ({"colour": "red"}, "'colour'"),
    ],
)
def test_a_bad_parameter_is_refused_by_name(params: dict[str, str], named: str) -> None:
    with pytest.raises(BadRequest, match=named):
        read_query(params)


def test_path_ids_follow_the_event_id_rules() -> None:
    assert path_id("user-1", "user_id") == "user-1"
    with pytest.raises(BadRequest, match="'user_id'"):
        path_id("  ", "user_id")


@pytest.mark.parametrize(
    ("value", "valid"), [("a", True), ("a b", True), (" ", False), ("a/b", False), ("a\x01", False)]
)
def test_the_documented_id_pattern_matches_what_the_checks_accept(value: str, valid: bool) -> None:
    assert bool(re.match(ID_PATTERN, value)) is valid


@pytest.mark.parametrize(
    ("value", "valid"), [("a", True), ("a,b c", True), ("a,", False), (",", False)]
)
def test_the_documented_list_pattern_matches_what_the_checks_accept(
    value: str, valid: bool
) -> None:
    assert bool(re.match(LIST_PATTERN, value)) is valid
    if valid:
        read_query({"exclude": value})
    else:
        with pytest.raises(BadRequest):
            read_query({"exclude": value})


def test_a_stored_list_is_filtered_then_cut_to_k() -> None:
    doc = {
        "items": [
            {"item_id": "1", "category": "a"},
            {"item_id": "2", "category": "b"},
            {"item_id": "3", "category": "a"},
            {"item_id": "4", "category": "a"},
        ]
    }
    out = narrowed(doc, ReadQuery(k=2, categories=("a",), exclude=("1",)), default_k=10)
    assert [i["item_id"] for i in out["items"]] == ["3", "4"]
    assert len(narrowed(doc, ReadQuery(), default_k=3)["items"]) == 3
