"""What the state changelogs cost: bytes per event, and restore time after a restart.

    python -m load_tests restore [--items 100000] [--out results/restore.json]

Starts a local broker and fills fresh changelog topics the way running workers do:
- `signals`: MovieLens-100K's ratings in timestamp order, in micro-batches of 64, as one
  delta per batch (each consumption paired with the user's earlier ones), with a snapshot
  after 80% of them (as the periodic snapshot would be);
- `user-state`: every MovieLens user's state after all their ratings (a compacted topic
  keeps one record per user), on the partition of their events;
- `item-vectors`: the MovieLens catalogue, and separately `--items` synthetic items.
Then it restores each into a fresh process state, as a starting worker does, timing it, and
checks that the restored signals score exactly like the ones the deltas were built into.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.changelog import CatalogueReplica, OffsetFile, SignalsFeed, changelog_messages
from worker.changelog.users import UserStateRestorer
from worker.evaluate.replay import partition_of
from worker.events import UserEvent
from worker.kafka import OutputProducer, all_topics, ensure_topics, prefixed_topics
from worker.movielens import Rating, load_ratings
from worker.recommend import covisit_pairs
from worker.records import BatchResult, OutMessage
from worker.settings import Settings, load_settings
from worker.signals import Signals
from worker.stack.broker import LocalBroker
from worker.store import EdgeVectorStore, ItemRecord, UserState
from worker.user_state import apply_events

BATCH = 64


def _signal_batches(
    settings: Settings, ratings: Sequence[Rating]
) -> tuple[list[BatchResult], dict[str, UserState]]:
    """The outcomes a worker's events path makes of these ratings (signals and states)."""
    states: dict[str, UserState] = {}
    outcomes = []
    for first in range(0, len(ratings), BATCH):
        outcome = BatchResult()
        for n, r in enumerate(ratings[first : first + BATCH], first):
            event = UserEvent(f"r{n}", r.user_id, r.item_id, "rating", r.rating, r.ts)
            before = states.get(r.user_id) or UserState(
                r.user_id, partition=partition_of(r.user_id, settings.topic_partitions)
            )
            outcome.signals.trending.append((r.item_id, r.ts))
            outcome.signals.covisits += covisit_pairs(
                before, [event], settings.covisitation_history
            )
            states[r.user_id] = apply_events(
                before,
                [event],
                weights=settings.event_weights,
                history_window=settings.history_window,
                seen_window=settings.seen_window,
            )
        outcomes.append(outcome)
    return outcomes, states


async def _publish(output: OutputProducer, messages: list[OutMessage], chunk: int = 2000) -> int:
    for first in range(0, len(messages), chunk):
        await output.publish(messages[first : first + chunk], [], "unused.dlq")
    return sum(len(m.key) + len(m.value or b"") for m in messages)


def _items(count: int, dim: int, seed: int = 7) -> list[ItemRecord]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        ItemRecord(f"item-{n}", vectors[n], title=f"Item {n}", category=f"c{n % 20}")
        for n in range(count)
    ]


async def _signals_part(settings: Settings, output: OutputProducer) -> dict[str, Any]:
    ratings = load_ratings()
    outcomes, states = _signal_batches(settings, ratings)
    truth = Signals.from_settings(settings)
    deltas = []
    for n, outcome in enumerate(outcomes):
        deltas += changelog_messages(outcome, settings, batch_id=f"b{n}", origin=None)
    cut = int(0.8 * len(deltas))
    delta_bytes = await _publish(output, deltas[:cut])
    for outcome in outcomes[: len(outcomes) * 8 // 10]:
        truth.apply(outcome.signals)
    writer = SignalsFeed(settings, Signals.from_settings(settings))
    await writer.start()
    snapshot = await writer.snapshot().messages(settings)
    await writer.reader.stop()
    snapshot_bytes = await _publish(output, snapshot)
    delta_bytes += await _publish(output, deltas[cut:])
    for outcome in outcomes[len(outcomes) * 8 // 10 :]:
        truth.apply(outcome.signals)

    restored = SignalsFeed(settings, Signals.from_settings(settings))
    await restored.start()
    await restored.reader.stop()
    histories = [
        [i.item_id for i in s.history][-settings.covisitation_history :] for s in states.values()
    ]
    same = restored.signals.trending.top(200) == truth.trending.top(200) and (
        restored.signals.covisitation.scores_many(histories)
        == truth.covisitation.scores_many(histories)
    )
    users = BatchResult(
        user_states=list(states.values()),
        user_partitions={s.user_id: s.partition for s in states.values()},
    )
    records = changelog_messages(users, settings, batch_id="users", origin=b"bench")
    user_bytes = await _publish(
        output, [m for m in records if m.topic == settings.user_state_topic]
    )
    return {
        "events": len(ratings),
        "delta_bytes_per_event": round(delta_bytes / len(ratings), 1),
        "deltas": len(deltas),
        "snapshot_bytes": snapshot_bytes,
        "signals_restore_s": round(restored.restore_seconds, 3),
        "signals_deltas_replayed": restored.reader.records_read,
        "signals_restored_equal": same,
        "users": len(states),
        "user_state_bytes_per_record": round(user_bytes / len(states), 1),
        "_states": states,
    }


async def _restore_users(settings: Settings, work: Path) -> float:
    store = EdgeVectorStore(work / "users-edge", settings.embedding_dim)
    await store.open()
    restorer = UserStateRestorer(settings, store, OffsetFile(work / "u.json"))
    try:
        await restorer.start()
        started = time.perf_counter()
        await restorer.restore(list(range(settings.topic_partitions)))
        return time.perf_counter() - started
    finally:
        await restorer.stop()
        await store.close()


async def _catalogue_part(
    settings: Settings, output: OutputProducer, count: int, work: Path
) -> dict[str, Any]:
    items = _items(count, settings.embedding_dim)
    published = await _publish(
        output,
        changelog_messages(
            BatchResult(items_written=items), settings, batch_id="i", origin=b"other"
        ),
    )
    store = EdgeVectorStore(work / f"items-{count}", settings.embedding_dim)
    await store.open()
    replica = CatalogueReplica(settings, store, OffsetFile(work / f"c{count}.json"), b"me")
    try:
        seconds = await replica.start()
        stored = await store.count_items()
    finally:
        await replica.reader.stop()
        await store.close()
    return {
        "items": count,
        "bytes_per_item": round(published / count, 1),
        "restore_s": round(seconds, 2),
        "items_per_s": round(count / seconds),
        "stored": stored,
    }


async def run(items: int, work: Path) -> dict[str, Any]:
    broker = LocalBroker(work / "broker").start()
    try:
        base = load_settings(kafka_bootstrap_servers=broker.bootstrap_servers, data_dir=work)
        results: dict[str, Any] = {}
        for label, count in (("movielens", 1682), (f"synthetic_{items}", items)):
            settings = base.model_copy(update=prefixed_topics(f"restore-{uuid.uuid4().hex[:8]}"))
            await ensure_topics(settings, all_topics(settings))
            output = OutputProducer(settings)
            await output.start()
            try:
                if label == "movielens":
                    signals = await _signals_part(settings, output)
                    signals.pop("_states")
                    signals["users_restore_s"] = round(await _restore_users(settings, work), 3)
                    results["signals_and_users"] = signals
                results[f"catalogue_{label}"] = await _catalogue_part(settings, output, count, work)
            finally:
                await output.stop()
        return results
    finally:
        broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests restore", description=__doc__)
    parser.add_argument("--items", type=int, default=100_000, help="synthetic catalogue size")
    parser.add_argument("--out", type=Path, default=Path("results/restore.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="restore-bench-") as tmp:
        report = asyncio.run(run(args.items, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0
