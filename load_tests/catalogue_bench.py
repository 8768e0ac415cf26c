"""What the catalogue's size costs the embedded store, and how long it holds the worker.

    python -m load_tests catalogue [--sizes 2000,20000,100000] [--out results/catalogue.json]

Per size, into a fresh `EdgeVectorStore` (the worker's own): synthetic clustered 256-d unit
vectors (100 clusters, one of 20 categories each), then the searches the events path makes
(batches of 50, k = 50, 20 excluded seen items each, half with a category filter):
- upsert items/s; RSS; the time a reopen takes (item-cache warm-up included);
- search CPU ms per query before the index exists (an exact scan: the recall reference) and
  after `optimize` builds it, with recall@50 against the exact answers: the first pass (the
  item cache filling), then the median of 5, also by HNSW_EF and by ITEMS_OVERSAMPLING;
- how long the index build takes (in another process and swapped in, as the worker does;
  `--in-place`: `optimize` in this process, the old way, for comparison) and the longest
  the process stood still meanwhile;
- then 5% more items arrive and the next build runs while searches go on: the wall time of
  search batches during it against before it;
- last, the smallest and the largest size's search CPU side by side, their passes taking
  turns (load_tests/catalogue_compare.py): the ratio to read.
Python's GC runs as in the worker (GC_THRESHOLD; what is alive at the start is frozen out
of collections).
"Stood still": a thread that sleeps 1 ms in a loop records its longest gap; the embedded
engine holds Python's GIL for a whole call, so a gap is the event loop, the Kafka
heartbeats and every other thread of a worker frozen that long.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from load_tests.catalogue_compare import BATCH, compare_sizes, cpu_s, search_pass
from load_tests.procfs import tree_rss_mb
from load_tests.stall import StallWatch
from load_tests.synthetic_items import (
    CATEGORIES,
    DIM,
    VectorShape,
    clustered,
    fusion_shape,
    isotropic_shape,
    queries,
)
from worker.runtime import create_store
from worker.settings import Settings, load_settings
from worker.store import EdgeVectorStore, ItemRecord, SearchRequest
from worker.store.edge_shards import QUANTIZATIONS, Quantization
from worker.store.exact_index import one_blas_thread

EF_VALUES = (64, 128, 256, 512)
OVERSAMPLING_VALUES = (1.0, 1.5, 2.0, 3.0)
PACE_S = 0.02  # between search batches while a build runs, and in the window after it
STEADY_WINDOW_MAX_S = 120.0  # searches before a rebuild: as long as the first build, at most
PASSES = 5  # indexed searches: CPU ms/query of the median pass (one pass is ~0.1 s of CPU)


async def _search(
    store: EdgeVectorStore, requests: Sequence[SearchRequest], passes: int = 1
) -> tuple[list[list[str]], float]:
    """-> (ids per request, CPU ms per query of the median pass)."""
    cpu_ms: list[float] = []
    for _ in range(passes):
        cpu = await cpu_s(store)
        answers = await search_pass(store, requests)
        cpu_ms.append((await cpu_s(store) - cpu) * 1000.0 / len(requests))
    return answers, float(np.median(cpu_ms))


async def _longest_stall_s(store: EdgeVectorStore, requests: Sequence[SearchRequest]) -> float:
    """The longest stall during one more pass, watched apart from the timed ones: the
    watching thread's wake-ups cost CPU too."""
    with StallWatch() as watch:
        await search_pass(store, requests)
    return watch.longest_s


def recall(found: Sequence[Sequence[str]], exact: Sequence[Sequence[str]]) -> float:
    hits = sum(len(set(f) & set(e)) for f, e in zip(found, exact, strict=True))
    return hits / max(1, sum(len(e) for e in exact))


async def _batch_ms(
    store: EdgeVectorStore, requests: Sequence[SearchRequest], batches: int
) -> list[float]:
    """Wall ms of `batches` search batches, one after another."""
    times = []
    for n in range(batches):
        start = (n * BATCH) % len(requests)
        began = time.perf_counter()
        await store.search_items(requests[start : start + BATCH])
        times.append((time.perf_counter() - began) * 1000.0)
    return times


async def _batch_ms_until(
    store: EdgeVectorStore, requests: Sequence[SearchRequest], task: asyncio.Task[None]
) -> list[tuple[float, float, bool]]:
    """Search batches run back to back (20 ms apart) until `task` is done: -> (seconds
    since the first began, wall ms, whether the active collection had been swapped by its
    end) of each."""
    began, before = time.perf_counter(), store.active_collection
    times: list[tuple[float, float, bool]] = []
    while not task.done():
        at = time.perf_counter() - began
        (ms,) = await _batch_ms(store, requests, 1)
        times.append((round(at, 2), ms, store.active_collection != before))
        await asyncio.sleep(PACE_S)
    return times


async def _batch_ms_for(
    store: EdgeVectorStore, requests: Sequence[SearchRequest], seconds: float
) -> list[float]:
    """Wall ms of search batches paced as `_batch_ms_until` paces them, for `seconds`."""
    times: list[float] = []
    ends = time.perf_counter() + seconds
    while not times or time.perf_counter() < ends:
        times += await _batch_ms(store, requests, 1)
        await asyncio.sleep(PACE_S)
    return times


def _spread(times: Sequence[float]) -> dict[str, float] | None:
    """p50, p99 and max of batch times (ms)."""
    if not times:
        return None
    p50, p99 = np.percentile(times, [50, 99])
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1), "max": round(max(times), 1)}


async def _fill(
    store: EdgeVectorStore, vectors: np.ndarray, labels: np.ndarray, prefix: str = ""
) -> None:
    for start in range(0, len(vectors), 1000):
        await store.upsert_items(
            [
                ItemRecord(f"{prefix}{i}", vectors[i], category=f"c{labels[i] % CATEGORIES}")
                for i in range(start, min(len(vectors), start + 1000))
            ]
        )


async def prefill_store(settings: Settings, count: int) -> None:
    """`count` synthetic items (shaped like the trained item vectors, ids "synthetic-<n>")
    written straight into the embedded store a worker with these settings opens, flushed
    and indexed: a catalogue of that size for a worker run, without `count` items messages
    through Triton. They name no item space: the worker's first items give it theirs."""
    store = create_store(settings)
    if not isinstance(store, EdgeVectorStore) or settings.embedding_dim != DIM:
        raise ValueError(f"synthetic items need the embedded store and {DIM}-d vectors")
    vectors, labels = clustered(count, fusion_shape(), seed=3)
    await store.open()
    try:
        await _fill(store, vectors, labels, prefix="synthetic-")
        await store.flush()
        await store.build_index()
    finally:
        await store.close()


async def _new_items_then_rebuild(
    store: EdgeVectorStore,
    size: int,
    shape: VectorShape,
    requests: Sequence[SearchRequest],
    in_place: bool,
    window_s: float,
) -> tuple[dict[str, float], dict[str, Any]]:
    """New items arrive (5% of the catalogue, unindexed) and are flushed; searches run for
    `window_s`, then the next build runs while they go on, as they do in a worker. -> (the
    flush, the searches)."""
    fresh, fresh_labels = clustered(size // 20, shape, seed=2)
    await _fill(store, fresh, fresh_labels, prefix="new-")
    flushed = await _flush(store)
    with StallWatch() as watch:
        steady, during = await _rebuild_with_searches(store, requests, in_place, window_s)
    # A rebuild's slowest batch is one of hundreds at 1M items: set against the slowest of
    # a steady window about as long, on the same collection, not against a median.
    spreads = {"before": _spread(steady), "during": _spread([ms for _, ms, _ in during])}
    slowest = max(during, key=lambda batch: batch[1], default=None)
    swapped = next((at for at, _, after in during if after), None)
    return flushed, {
        "batch_ms_spread": spreads,
        "batch_ms_steady_p50": round(float(np.median(steady)), 1),
        "batch_ms_during_p50": (
            round(float(np.median([ms for _, ms, _ in during])), 1) if during else None
        ),
        "batch_ms_during_max": round(slowest[1], 1) if slowest else None,
        # When the slowest batch began and the first one to end after the swap began, in
        # seconds from the build's start: which step of it slowed the searches down.
        "slowest_batch_at_s": slowest[0] if slowest else None,
        "swap_by_batch_at_s": swapped,
        "build_s": round(during[-1][0], 1) if during else None,
        # The five slowest batches (began at s, ms) and when each step of the build ended.
        "slowest_batches": sorted(((at, round(ms)) for at, ms, _ in during), key=lambda b: -b[1])[
            :5
        ],
        "build_steps_s": phases.ends if (phases := store.last_index_build) else None,
        "warm_up_batch_ms": phases.warm_up_ms if phases else None,
        "build_process_s": phases.build if phases else None,
        "longest_stall_ms": round(watch.longest_s * 1000),
    }


async def _flush(store: EdgeVectorStore) -> dict[str, float]:
    """Persist the store's segments: -> seconds and the longest stall meanwhile."""
    with StallWatch() as watch:
        started = time.perf_counter()
        await store.flush()
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "longest_stall_ms": round(watch.longest_s * 1000)}


async def _rebuild_with_searches(
    store: EdgeVectorStore, requests: Sequence[SearchRequest], in_place: bool, window_s: float
) -> tuple[list[float], list[tuple[float, float, bool]]]:
    """-> (wall ms of search batches for `window_s` before, batches during the next index
    build as `_batch_ms_until` gives them)."""
    steady = await _batch_ms_for(store, requests, window_s)
    if in_place:
        await store.optimize()
        return steady, []
    rebuild = asyncio.create_task(store.build_index())
    during = await _batch_ms_until(store, requests, rebuild)
    await rebuild
    return steady, during


async def _recall_by(
    store: EdgeVectorStore,
    requests: Sequence[SearchRequest],
    exact: Sequence[Sequence[str]],
    setting: str,
    values: Sequence[float],
) -> dict[float, dict[str, float]]:
    """Search CPU and recall@50 of the built index with the store's `setting` ("hnsw_ef":
    HNSW_EF, "oversampling": ITEMS_OVERSAMPLING) at each of `values`, the rest as set."""
    configured, results = getattr(store, setting), {}
    for value in values:
        setattr(store, setting, value)
        results[value] = await _cost_and_recall(store, requests, exact)
    setattr(store, setting, configured)
    return results


async def _cost_and_recall(
    store: EdgeVectorStore, requests: Sequence[SearchRequest], exact: Sequence[Sequence[str]]
) -> dict[str, float]:
    found, cpu_ms = await _search(store, requests, PASSES)
    return {"cpu_ms_per_query": round(cpu_ms, 2), "recall_at_50": round(recall(found, exact), 4)}


async def _indexed_searches(
    store: EdgeVectorStore, requests: Sequence[SearchRequest], exact: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Search CPU and recall@50 of the freshly built index, as configured."""
    # The first pass after a swap pages the index in and fills the item cache (at 1M items
    # the default cache holds a tenth of them): what a search costs the first time.
    _, first_ms = await _search(store, requests)
    found, cpu_ms = await _search(store, requests, PASSES)
    stall_s = await _longest_stall_s(store, requests)
    return {
        "cpu_ms_per_query": round(cpu_ms, 2),
        "first_pass_cpu_ms_per_query": round(first_ms, 2),
        "recall_at_50": round(recall(found, exact), 4),
        # Even requests have no category filter, odd ones one category of 20.
        "recall_at_50_unfiltered": round(recall(found[::2], exact[::2]), 4),
        "recall_at_50_one_category": round(recall(found[1::2], exact[1::2]), 4),
        "longest_stall_ms": round(stall_s * 1000),
    }


async def measure(
    size: int, work: Path, in_place: bool, quantization: Quantization, shape: VectorShape,
    items_process: bool = False,
) -> dict[str, Any]:  # fmt: skip
    vectors, labels = clustered(size, shape)
    path = work / f"edge-{size}"
    # The engine's searches at every size (catalogue_compare.py measures the in-process scan).
    store = EdgeVectorStore(path, DIM, flush_interval_s=None, quantization=quantization,
                            items_process=items_process, exact_search_max_items=0)  # fmt: skip
    await store.open()
    started = time.perf_counter()
    await _fill(store, vectors, labels)
    upsert_s = time.perf_counter() - started
    flushed = await _flush(store)  # what a worker's periodic flush does, here for them all
    requests = queries(size, shape)
    exact, exact_ms = await _search(store, requests)
    exact_stall = await _longest_stall_s(store, requests)
    with StallWatch() as watch:
        started = time.perf_counter()
        await (store.optimize() if in_place else store.build_index())
        build_s = time.perf_counter() - started
    indexed = await _indexed_searches(store, requests, exact)
    by_ef = await _recall_by(store, requests, exact, "hnsw_ef", EF_VALUES)
    by_oversampling = (  # unquantised: nothing to rescore
        await _recall_by(store, requests, exact, "oversampling", OVERSAMPLING_VALUES)
        if store.oversampling
        else {}
    )
    window_s = min(build_s, STEADY_WINDOW_MAX_S)  # about as long as the rebuild will take
    fresh_flushed, rebuild = await _new_items_then_rebuild(
        store, size, shape, requests, in_place, window_s
    )
    rss = tree_rss_mb(os.getpid())
    await store.close()
    started = time.perf_counter()
    await store.open()
    open_s = time.perf_counter() - started
    await store.close()
    return {
        "items": size,
        "quantization": quantization,
        "items_process": items_process,
        "upsert_items_per_s": round(size / upsert_s),
        "flush": {"all_items": flushed, "five_percent_new": fresh_flushed},
        "exact": {
            "cpu_ms_per_query": round(exact_ms, 2),
            "longest_stall_ms": round(exact_stall * 1000),
        },
        "index_build": {
            "mode": "in place" if in_place else "another process",
            "seconds": round(build_s, 1),
            "longest_stall_ms": round(watch.longest_s * 1000),
        },
        "searches_during_a_rebuild": rebuild,
        "indexed": indexed,
        "indexed_by_hnsw_ef": by_ef,
        "indexed_by_oversampling": by_oversampling,
        "rss_mib": round(rss),
        "open_s": round(open_s, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests catalogue", description=__doc__)
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--out", type=Path, default=Path("results/catalogue.json"))
    parser.add_argument(
        "--in-place", action="store_true", help="index in the worker's process (the old way)"
    )
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="turbo4")
    parser.add_argument(
        "--items-process",
        action="store_true",
        help="items collections in processes of their own (ITEMS_PROCESS)",
    )
    parser.add_argument(
        "--vectors",
        choices=["isotropic", "fusion"],
        default="fusion",
        help="clusters with flat noise (worst case) or shaped like the trained item vectors",
    )
    args = parser.parse_args(argv)
    gc_threshold = load_settings().gc_threshold
    if gc_threshold:  # as the worker's process runs (worker.__main__, worker/runtime.py)
        gc.set_threshold(gc_threshold)
        gc.freeze()
    one_blas_thread()  # as the worker's process runs
    shape = fusion_shape() if args.vectors == "fusion" else isotropic_shape()
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict[str, Any] = {"sizes": []}
    with tempfile.TemporaryDirectory(prefix="catalogue-bench-") as tmp:
        for size in sizes:
            row = asyncio.run(
                measure(
                    size, Path(tmp), args.in_place, args.quantization, shape, args.items_process
                )
            )
            result["sizes"].append({"vectors": args.vectors, **row})
            print(json.dumps(result["sizes"][-1]), flush=True)
        if len(sizes) > 1:
            small, large = min(sizes), max(sizes)
            ratio = asyncio.run(
                compare_sizes(
                    (Path(tmp) / f"edge-{small}", queries(small, shape)),
                    (Path(tmp) / f"edge-{large}", queries(large, shape)),
                    DIM,
                    args.quantization,
                    EF_VALUES[:2],
                    args.items_process,
                )
            )
            result["search_ratio"] = {"small": small, "large": large, **ratio}
            print(json.dumps(result["search_ratio"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
