"""The users collection's HNSW index, for `python -m load_tests users --index`: the new-item
fan-out's nearest-users search before and after `build_users_index` (CPU ms per new item,
recall@20 against the exact answer), and what the build costs the process meanwhile while
a writer saves 64 users every 200 ms, as the events path does, and the users are flushed every
30 s, as the worker flushes them (the longest stall of a 1 ms ticker thread, the saves' wall
ms, in a steady window, during the build and in a window after it)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from load_tests.stall import StallWatch
from worker.store import EdgeVectorStore, UserState

LIMIT = 20
PROBES = 20
SAVE_EVERY_S = 0.2
FLUSH_EVERY_S = 30.0  # the worker's FLUSH_INTERVAL_S
STEADY_S = 35.0  # one flush included


async def measure_index(
    store: EdgeVectorStore,
    probes: Sequence[np.ndarray],
    rewrites: Sequence[UserState],
    partitions: int,
    space: str,
) -> dict[str, Any]:
    """`probes`: new items' vectors; `rewrites`: states the writer saves, 64 at a time."""
    asks = {"owning_every_partition": None, "one_partition": [0]}
    if partitions > 1:
        asks["half_the_partitions"] = list(range(0, partitions, 2))
    exact = {name: await _search(store, probes, ask, space) for name, ask in asks.items()}
    await store.flush()
    flusher = asyncio.create_task(_flush_periodically(store))
    with StallWatch() as steady_watch:
        steady = await _save_for(store, rewrites, seconds=STEADY_S)
    saves: list[float] = []
    writer = asyncio.create_task(_save_until_cancelled(store, rewrites, saves))
    with StallWatch() as watch:
        phases = await store.build_users_index()
    writer.cancel()
    with StallWatch() as after_watch:  # the indexed collection's own flushes
        after = await _save_for(store, rewrites, seconds=STEADY_S)
    flusher.cancel()
    indexed = {name: await _search(store, probes, ask, space) for name, ask in asks.items()}
    row: dict[str, Any] = {
        "build_steps_s": phases.ends,
        "build_process_s": phases.build,
        "longest_stall_ms_steady": round(steady_watch.longest_s * 1000, 1),
        "stalls_over_50_ms_steady": steady_watch.stalls,
        "longest_stall_ms": round(watch.longest_s * 1000, 1),
        "stalls_over_50_ms": watch.stalls,  # (s from the build's start, ms)
        "saves_during_build": len(saves),
        "save_ms_steady": _spread(steady),
        "save_ms_during_build": _spread(saves),
        "longest_stall_ms_after_swap": round(after_watch.longest_s * 1000, 1),
        "stalls_over_50_ms_after_swap": after_watch.stalls,
        "save_ms_after_swap": _spread(after),
        "unindexed_users_after": await store.unindexed_users(),
    }
    for name in asks:
        ms_exact, found_exact = exact[name]
        ms_indexed, found_indexed = indexed[name]
        row[f"fanout_{name}"] = {
            "exact_ms": ms_exact,
            "indexed_ms": ms_indexed,
            "recall_at_20": _recall(found_exact, found_indexed),
        }
    return row


async def _search(
    store: EdgeVectorStore, probes: Sequence[np.ndarray], ask: list[int] | None, space: str
) -> tuple[float, list[set[str]]]:
    """-> (median CPU ms per new item, the users found per probe)."""
    times, found = [], []
    for probe in probes:
        started = time.process_time()
        hits = (await store.search_users([probe], LIMIT, ask, space))[0]
        times.append(time.process_time() - started)
        found.append({user_id for user_id, _ in hits})
    return round(1000 * statistics.median(times), 2), found


def _recall(exact: list[set[str]], indexed: list[set[str]]) -> float:
    shares = [len(e & i) / len(e) for e, i in zip(exact, indexed, strict=True) if e]
    return round(float(np.mean(shares)), 3) if shares else 1.0


async def _save_for(
    store: EdgeVectorStore, rewrites: Sequence[UserState], seconds: float
) -> list[float]:
    saves: list[float] = []
    writer = asyncio.create_task(_save_until_cancelled(store, rewrites, saves))
    await asyncio.sleep(seconds)
    writer.cancel()
    return saves


async def _save_until_cancelled(
    store: EdgeVectorStore, rewrites: Sequence[UserState], saves: list[float]
) -> None:
    start = 0
    while True:
        batch = list(rewrites[start : start + 64]) or list(rewrites[:64])
        start = (start + 64) % max(len(rewrites), 1)
        began = time.perf_counter()
        await store.upsert_users(batch)
        saves.append(time.perf_counter() - began)
        await asyncio.sleep(SAVE_EVERY_S)


async def _flush_periodically(store: EdgeVectorStore) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY_S)
        await store.flush_users()


def _spread(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ms = np.array(seconds) * 1000
    return {
        "p50": round(float(np.percentile(ms, 50)), 1),
        "p99": round(float(np.percentile(ms, 99)), 1),
        "max": round(float(ms.max()), 1),
    }
