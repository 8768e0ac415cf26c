"""Point ids: stable across releases (replays must hit the same points), apart per kind,
and the same after their cache empties."""

from __future__ import annotations

import pytest

from worker.store import base
from worker.store.base import point_id, point_ids


def test_point_ids_are_the_released_ones_and_apart_per_kind() -> None:
    assert point_id("item", "a") == 3223765061292797314
    assert point_id("user", "a") == 320786005673585570
    assert point_ids("item", ["a", "b", "a"]) == {point_id("item", "a"), point_id("item", "b")}


def test_point_ids_stay_the_same_when_their_cache_empties(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {key: point_id("item", key) for key in "abcdef"}
    monkeypatch.setattr(base, "POINT_ID_CACHE", 2)
    base._POINT_IDS["item"].clear()
    assert {key: point_id("item", key) for key in "fedcba"} == before
    assert len(base._POINT_IDS["item"]) <= 2
