"""Search cost of two catalogue sizes as a ratio measured side by side.

Each size's own figures are medians of a few passes taken minutes apart, and on a shared
machine the CPU time of the same pass drifts by 15-40% from one minute to the next; a
ratio of two such figures carries both drifts. Here both stores are open at once and their
passes alternate, so a burst of load from a neighbour falls on both: the ratio of the
medians is the figure to read (`python -m load_tests catalogue` reports it as
`search_ratio`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.store import EdgeVectorStore, SearchRequest
from worker.store.edge_shards import Quantization

BATCH = 50  # searches per store call, as the events path batches them
ROUNDS = 9  # alternating passes per store and setting


async def search_pass(store: EdgeVectorStore, requests: Sequence[SearchRequest]) -> list[list[str]]:
    """Every request once, in batches: -> the item ids found per request."""
    answers: list[list[str]] = []
    for start in range(0, len(requests), BATCH):
        hits = await store.search_items(requests[start : start + BATCH])
        answers += [[h.item_id for h in found] for found in hits]
    return answers


async def cpu_s(store: EdgeVectorStore) -> float:
    """This process's CPU seconds and those of the store's items processes (if any)."""
    return time.process_time() + await store.items_process_cpu_s()


async def alternating_cpu_ms(
    runs: Sequence[tuple[EdgeVectorStore, Sequence[SearchRequest]]], rounds: int = ROUNDS
) -> list[float]:
    """CPU ms per query of each (store, requests), the median of `rounds` passes taken in
    turn (one pass of each per round, after one unmeasured pass each)."""
    for store, requests in runs:
        await search_pass(store, requests)
    cpu_ms: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for n, (store, requests) in enumerate(runs):
            started = await cpu_s(store)
            await search_pass(store, requests)
            cpu_ms[n].append((await cpu_s(store) - started) * 1000.0 / len(requests))
    return [float(np.median(ms)) for ms in cpu_ms]


async def compare_sizes(
    small: tuple[Path, Sequence[SearchRequest]],
    large: tuple[Path, Sequence[SearchRequest]],
    dim: int,
    quantization: Quantization,
    ef_values: Sequence[int],
    items_process: bool = False,
) -> dict[str, Any]:
    """Reopen two stores the benchmark built (directory, its requests) and compare their
    search CPU at each HNSW_EF: -> {"by_hnsw_ef": {ef: {small, large, ratio}}}; and, where
    the small catalogue is within EXACT_SEARCH_MAX_ITEMS, its in-process exact scan (what a
    worker does at that size) against the large one at the last ef: "small_exact_scan"."""
    stores = [
        EdgeVectorStore(
            path,
            dim,
            flush_interval_s=None,
            quantization=quantization,
            items_process=items_process,
        )
        for path in (small[0], large[0])
    ]
    for store in stores:
        await store.open()
    scans = stores[0].exact_search
    for store in stores:  # the engine's figures first, the large store's throughout
        store.set_exact_search(False)
    try:
        by_ef: dict[int, dict[str, float]] = {}
        for ef in ef_values:
            for store in stores:
                store.hnsw_ef = ef
            small_ms, large_ms = await alternating_cpu_ms(
                [(stores[0], small[1]), (stores[1], large[1])]
            )
            by_ef[ef] = {
                "small_cpu_ms_per_query": round(small_ms, 3),
                "large_cpu_ms_per_query": round(large_ms, 3),
                "ratio": round(large_ms / small_ms, 2),
            }
        out: dict[str, Any] = {"rounds": ROUNDS, "by_hnsw_ef": by_ef}
        if scans and stores[0].set_exact_search(True):
            small_ms, large_ms = await alternating_cpu_ms(
                [(stores[0], small[1]), (stores[1], large[1])]
            )
            out["small_exact_scan"] = {
                "hnsw_ef": ef_values[-1],
                "small_cpu_ms_per_query": round(small_ms, 3),
                "large_cpu_ms_per_query": round(large_ms, 3),
                "ratio": round(large_ms / small_ms, 2),
            }
    finally:
        for store in stores:
            await store.close()
    return out
