"""Signals snapshots: taken, encoded and loaded back into equal state (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from worker.changelog.snapshots import CHUNK_BYTES, MANIFEST_KEY, Snapshot
from worker.records import SignalUpdates
from worker.settings import load_settings
from worker.signals import Signals


def _busy_signals(seed: int = 3) -> Signals:
    settings = load_settings(covisitation_neighbours=5, covisitation_items=400)
    signals = Signals.from_settings(settings)
    rng = np.random.default_rng(seed)
    for n in range(3000):
        items = [f"i{x}" for x in rng.integers(0, 300, size=4)]
        signals.apply(
            SignalUpdates(trending=[(items[0], 1000.0 + n)], covisits=[(items[0], items[1:])])
        )
    return signals


async def test_a_loaded_snapshot_scores_exactly_like_the_original() -> None:
    original = _busy_signals()
    snapshot = Snapshot.take(original, {0: 42}, ["b1", "b2"])
    settings = load_settings(covisitation_neighbours=5, covisitation_items=400)
    messages = await snapshot.messages(settings)
    assert messages[-1].key == MANIFEST_KEY
    assert all(len(m.value or b"") <= CHUNK_BYTES for m in messages)
    blob = b"".join(m.value or b"" for m in messages[:-1])
    loaded = Snapshot.decode(blob)
    assert loaded.positions == {0: 42} and loaded.recent_batches == ["b1", "b2"]
    restored = Signals.from_settings(settings)
    loaded.load_into(restored)
    assert restored.trending.top(50) == original.trending.top(50)
    histories = [["i1", "i2"], ["i7"], ["i100", "i200", "i3"]]
    assert restored.covisitation.scores_many(histories) == original.covisitation.scores_many(
        histories
    )
    # Both go on identically.
    for signals in (original, restored):
        signals.apply(SignalUpdates(trending=[("i9", 9999.0)], covisits=[("i9", ["i1"])]))
    assert restored.trending.top(50) == original.trending.top(50)
    assert restored.covisitation.scores(["i9"]) == original.covisitation.scores(["i9"])


def test_a_snapshot_of_another_shape_is_refused() -> None:
    snapshot = Snapshot.take(_busy_signals(), {}, [])
    other = Signals.from_settings(load_settings(covisitation_neighbours=7))
    with pytest.raises(ValueError, match="does not fit"):
        snapshot.load_into(other)
