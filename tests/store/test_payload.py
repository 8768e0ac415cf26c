"""The user point's payload layout, shared by both stores and the changelog (pure)."""

from __future__ import annotations

import numpy as np
import orjson

from worker.store import Interaction, UserState
from worker.store.payload import ITEM_SPACE_FIELD, PARTITION_FIELD, user_payload, user_state


def _user() -> UserState:
    return UserState(
        "ann",
        history=[Interaction("film-1", "click", 1.0, 10.0, "e1")],
        seen=["film-1"],
        vector=np.ones(4, dtype=np.float32),
        updated_at=11.5,
        event_keys=b"\x01" * 8,
        partition=3,
        item_space="space-a",
        latest="film-1",
    )


def test_a_user_state_round_trips_through_its_payload() -> None:
    user = _user()
    back = user_state(user_payload(user), user.vector)
    assert back == user


def test_the_payload_keeps_as_fields_only_what_searches_filter_on_or_return() -> None:
    # Every field of its own costs each upsert a conversion in the engine's binding.
    assert set(user_payload(_user())) == {"user_id", "state", PARTITION_FIELD, ITEM_SPACE_FIELD}


def test_a_payload_written_with_updated_at_and_latest_as_fields_still_reads() -> None:
    state = {"history": [["film-1", "click", 1.0, 10.0, "e1"]], "seen": ["film-1"]}
    earlier = {
        "user_id": "ann",
        "state": orjson.dumps(state).decode(),
        "updated_at": 11.5,
        PARTITION_FIELD: 3,
        ITEM_SPACE_FIELD: "space-a",
        "latest": "film-1",
    }
    back = user_state(earlier, None)
    assert (back.updated_at, back.latest, back.partition) == (11.5, "film-1", 3)
    assert back.history == _user().history
