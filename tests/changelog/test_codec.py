"""Changelog records and batch outcomes -> changelog messages (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from worker.changelog import changelog_messages
from worker.changelog.catalogue import ORIGIN_HEADER
from worker.changelog.codec import (
    ChangelogDecodeError,
    decode_delta,
    decode_item,
    decode_user,
    encode_delta,
    encode_item,
    encode_user,
)
from worker.records import BatchResult, SignalUpdates
from worker.settings import load_settings
from worker.store import Interaction, ItemRecord, UserState


def _item(item_id: str = "film-1") -> ItemRecord:
    vector = np.random.default_rng(1).standard_normal(8).astype(np.float32)
    return ItemRecord(
        item_id, vector / np.linalg.norm(vector), "Film", "drama", ("a",), 5.0, 0.5, "7"
    )


def _user() -> UserState:
    return UserState(
        "ann",
        history=[Interaction("film-1", "click", 1.0, 10.0, "e1")],
        seen=["film-1"],
        vector=np.ones(8, dtype=np.float32) / np.sqrt(8),
        updated_at=11.0,
        event_keys=b"\x01" * 8,
    )


def test_item_and_user_records_round_trip_exactly() -> None:
    item = _item()
    back = decode_item(encode_item(item))
    assert back.item_id == item.item_id and back.tags == item.tags
    assert back.model_version == "7" and back.category == "drama"
    np.testing.assert_array_equal(back.vector, item.vector)
    user = decode_user(encode_user(_user()))
    assert user.history == _user().history and user.seen == ["film-1"]
    assert user.event_keys == b"\x01" * 8
    np.testing.assert_array_equal(user.vector, _user().vector)  # type: ignore[arg-type]


def test_a_user_without_a_vector_round_trips_without_one() -> None:
    assert decode_user(encode_user(UserState("bob"))).vector is None


@pytest.mark.parametrize("value", [b"", b"\x00", b"\xff\xff\xff\xff{", b"\x02\x00\x00\x00{}abc"])
def test_unreadable_records_raise_a_decode_error(value: bytes) -> None:
    with pytest.raises(ChangelogDecodeError):
        decode_item(value)
    with pytest.raises(ChangelogDecodeError):
        decode_delta(value)


def test_signal_deltas_round_trip() -> None:
    updates = SignalUpdates(trending=[("a", 1.5)], covisits=[("b", ["a", "c"])])
    batch, back = decode_delta(encode_delta("batch-1", updates))
    assert batch == "batch-1"
    assert back.trending == updates.trending and back.covisits == updates.covisits


def test_embedded_outcomes_log_items_tombstones_and_states_on_their_events_partition() -> None:
    settings = load_settings()
    outcome = BatchResult(
        signals=SignalUpdates(trending=[("film-1", 3.0)], pushes=[("ann", 3.0)]),
        user_states=[_user()],
        user_partitions={"ann": 2},
        items_written=[_item()],
        items_deleted=["gone"],
    )
    out = changelog_messages(outcome, settings, batch_id="b1", origin=b"me")
    by_topic = {m.topic: m for m in out}
    assert by_topic[settings.signals_topic].partition == 0
    assert decode_delta(by_topic[settings.signals_topic].value or b"")[1].pushes == []
    items = [m for m in out if m.topic == settings.item_vectors_topic]
    assert [(m.key, m.value is None) for m in items] == [(b"film-1", False), (b"gone", True)]
    assert all(m.headers == ((ORIGIN_HEADER, b"me"),) for m in items)
    state = by_topic[settings.user_state_topic]
    assert (state.key, state.partition) == (b"ann", 2)


def test_with_a_server_store_only_the_signal_delta_is_logged() -> None:
    outcome = BatchResult(
        signals=SignalUpdates(trending=[("film-1", 3.0)]),
        user_states=[_user()],
        items_written=[_item()],
    )
    settings = load_settings()
    out = changelog_messages(outcome, settings, batch_id="b1", origin=None)
    assert [m.topic for m in out] == [settings.signals_topic]
    assert changelog_messages(BatchResult(), settings, batch_id="b2", origin=None) == []
