"""Where a read request's parameters are checked (pure): a bad one is a 400 naming it."""

from __future__ import annotations

import re
from collections.abc import Mapping

from worker.recommend import ReadQuery
from worker.validation import INVISIBLE_CLASS, InvalidMessage, check_id

MAX_K = 1000
MAX_LIST_CHARS = 8192  # a comma-separated parameter (categories, exclude)
# What the checks below accept, for the OpenAPI document: visible characters, not only
# spaces; a path id holds no "/" (it would be another path).
ID_PATTERN = rf"^[^/{INVISIBLE_CLASS}]*[^/\s{INVISIBLE_CLASS}][^/{INVISIBLE_CLASS}]*$"
_ENTRY = rf"[^,{INVISIBLE_CLASS}]*[^,\s{INVISIBLE_CLASS}][^,{INVISIBLE_CLASS}]*"
LIST_PATTERN = rf"^{_ENTRY}(,{_ENTRY})*$"


class BadRequest(ValueError):
    """A request parameter is invalid; the text names it (HTTP 400)."""


PARAMETERS = {"k", "categories", "exclude", "fresh"}


def path_id(raw: str, name: str) -> str:
    try:
        return check_id(raw, name)
    except InvalidMessage as exc:
        raise BadRequest(str(exc)) from None


def _flag(raw: str | None, name: str) -> bool:
    if raw is None or raw in ("false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise BadRequest(f"'{name}' must be true or false, got {raw[:32]!r}")


def _k(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_K:
        raise BadRequest(f"'k' must be an integer from 1 to {MAX_K}, got {raw[:32]!r}")
    return int(raw)


def _listed(raw: str | None, name: str) -> tuple[str, ...] | None:
    """A comma-separated list of visible values (None when absent). No length check per
    value: a longer one than ids and categories may be matches nothing, harmlessly."""
    if raw is None:
        return None
    if len(raw) > MAX_LIST_CHARS:
        raise BadRequest(f"'{name}' is longer than {MAX_LIST_CHARS} characters")
    values = raw.split(",")
    if not all(v.strip() for v in values) or re.search(f"[{INVISIBLE_CLASS}]", raw):
        raise BadRequest(f"'{name}' must list non-empty visible values, comma-separated")
    return tuple(v.strip() for v in values)


def read_query(
    params: Mapping[str, str], *, allowed: set[str] = PARAMETERS
) -> tuple[ReadQuery, bool]:
    """The request's narrowing (k, categories, exclude) and whether it asked for a fresh
    answer; unknown parameters are refused (a misspelt one would silently do nothing)."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0][:32]!r}; known: {sorted(allowed)}")
    exclude = _listed(params.get("exclude"), "exclude") or ()
    query = ReadQuery(_k(params.get("k")), _listed(params.get("categories"), "categories"), exclude)
    return query, _flag(params.get("fresh"), "fresh")
