"""The changelog readers against the real broker: signals feed, snapshots, catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.changelog import CatalogueReplica, OffsetFile, SignalsFeed, changelog_messages
from worker.changelog.snapshots import read_latest_snapshot
from worker.kafka import OutputProducer
from worker.records import BatchResult, OutMessage, SignalUpdates
from worker.settings import Settings
from worker.signals import Signals
from worker.store import EdgeVectorStore, ItemRecord

pytestmark = pytest.mark.integration


def _delta(settings: Settings, batch_id: str, item: str, ts: float) -> list[OutMessage]:
    outcome = BatchResult(signals=SignalUpdates(trending=[(item, ts)], covisits=[(item, ["x"])]))
    return changelog_messages(outcome, settings, batch_id=batch_id, origin=None)


async def _feed(settings: Settings) -> SignalsFeed:
    feed = SignalsFeed(settings, Signals.from_settings(settings))
    await feed.start()
    return feed


async def test_a_delta_delivered_twice_counts_once_and_every_reader_agrees(
    settings: Settings, output: OutputProducer
) -> None:
    first = [*_delta(settings, "b1", "a", 10.0), *_delta(settings, "b2", "b", 11.0)]
    await output.publish([*first, *first[:1]], [], "dlq")  # b1 again: a retried publish
    feed = await _feed(settings)
    try:
        assert (feed.applied, feed.duplicates) == (2, 1)
        assert feed.signals.trending.score("a", 10.0) == pytest.approx(1.0)
        assert feed.signals.covisitation.pair("a", "x") == 1.0
    finally:
        await feed.reader.stop()


async def test_a_restart_loads_the_newest_complete_snapshot_and_replays_only_after_it(
    settings: Settings, output: OutputProducer
) -> None:
    await output.publish(_delta(settings, "b1", "a", 10.0), [], "dlq")
    writer = await _feed(settings)
    try:
        await output.publish(await writer.snapshot().messages(settings), [], "dlq")
        await output.publish(_delta(settings, "b2", "b", 11.0), [], "dlq")
        await writer.reader.catch_up()
        # A snapshot cut short by a crash (chunks, no manifest) is ignored.
        torn = await writer.snapshot().messages(settings)
        await output.publish(torn[:-1], [], "dlq")
        expected = writer.signals.trending.top(10)
    finally:
        await writer.reader.stop()

    snapshot = await read_latest_snapshot(settings)
    assert snapshot is not None and snapshot.positions == {0: 1}
    restarted = await _feed(settings)
    try:
        assert restarted.reader.records_read == 1, "only the delta after the snapshot"
        assert restarted.signals.trending.top(10) == expected
    finally:
        await restarted.reader.stop()


async def test_no_snapshot_means_every_delta_is_replayed(
    settings: Settings, output: OutputProducer
) -> None:
    assert await read_latest_snapshot(settings) is None
    await output.publish(
        [m for n in range(5) for m in _delta(settings, f"b{n}", f"i{n}", float(n))], [], "dlq"
    )
    feed = await _feed(settings)
    try:
        assert feed.applied == 5 and len(feed.signals.trending) == 5
    finally:
        await feed.reader.stop()


async def test_the_catalogue_replica_applies_other_writers_and_resumes_from_its_checkpoint(
    settings: Settings, output: OutputProducer, tmp_path: Path
) -> None:
    def outcome(ids: list[str], deleted: list[str] = []) -> BatchResult:  # noqa: B006
        vectors = np.eye(4, dtype=np.float32)
        return BatchResult(
            items_written=[ItemRecord(i, vectors[n % 4], category="c") for n, i in enumerate(ids)],
            items_deleted=deleted,
        )

    other = changelog_messages(
        outcome(["a", "b", "c"], ["c"]), settings, batch_id="1", origin=b"w2"
    )
    mine = changelog_messages(outcome(["mine"]), settings, batch_id="2", origin=b"w1")
    await output.publish([*other, *mine], [], "dlq")

    store = EdgeVectorStore(tmp_path / "edge", 4)
    await store.open()
    offsets = OffsetFile(settings.data_dir / "offsets.json")
    replica = CatalogueReplica(settings, store, offsets, b"w1")
    try:
        await replica.start()
        assert sorted(await store.get_item_vectors(["a", "b", "c", "mine"])) == ["a", "b"]
        assert (replica.upserted, replica.deleted) == (2, 1)
    finally:
        await replica.reader.stop()

    await output.publish(
        changelog_messages(outcome(["d"]), settings, batch_id="3", origin=b"w2"), [], "dlq"
    )
    again = CatalogueReplica(settings, store, OffsetFile(offsets.path), b"w1")
    try:
        await again.start()
        assert again.reader.records_read == 1, "a restart on the same disk reads only the tail"
        assert sorted(await store.get_item_vectors(["a", "b", "d"])) == ["a", "b", "d"]
    finally:
        await again.reader.stop()
        await store.close()


async def test_items_whose_last_record_is_of_another_item_space_are_orphans_to_rebuild(
    settings: Settings, output: OutputProducer, tmp_path: Path
) -> None:
    def written(ids: list[str], space: str) -> list[OutMessage]:
        vectors = np.eye(4, dtype=np.float32)
        items = [ItemRecord(i, vectors[n % 4], model_version=space) for n, i in enumerate(ids)]
        outcome = BatchResult(items_written=items)
        return changelog_messages(outcome, settings, batch_id=space, origin=b"w2")

    # "a" and "b" were embedded in the old space; only "a" was re-embedded in the new one.
    await output.publish([*written(["a", "b"], "old"), *written(["a"], "new")], [], "dlq")
    store = EdgeVectorStore(tmp_path / "edge", 4)
    await store.open()
    store.adopt_item_space("new")  # an empty store takes the space Triton serves
    replica = CatalogueReplica(settings, store, OffsetFile(tmp_path / "offsets.json"), b"w1")
    try:
        await replica.start()
        assert sorted(await store.get_item_vectors(["a", "b"])) == ["a"]
        assert replica.orphans == {"b"}
        await output.publish(written(["b"], "new"), [], "dlq")
        await replica.reader.catch_up()
        assert replica.orphans == set()
    finally:
        await replica.reader.stop()
        await store.close()
