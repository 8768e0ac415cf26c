"""Item-ingestion throughput through the worker, next to the same ONNX models in-process.

    python -m load_tests.ingest_bench [--items 1682] [--rounds 6] [--json PATH]

Starts a local broker and tritonserver (worker.stack.LocalStack) and `python -m worker run`,
indexes `--warmup` items untimed (Triton's first runs are slow), then splits N MovieLens items
into rounds. Each round is measured twice, back to back (which goes first alternates, and a
second's pause before each lets the other's tail settle):

  worker      its items are produced to `items`; the clock stops when the worker's
              `streamrec_items_indexed_total` counts them: Kafka -> parse -> Triton
              item_embedder (text_encoder, fusion) -> Qdrant upsert
  in-process  the same items' served text through the same ONNX files (text encoder, then
              fusion) with onnxruntime (models/onnx_embedder.py), in micro-batches of
              ITEMS_BATCH_SIZE, while the idle services stay up

Pairing the rounds keeps the comparison fair on a shared machine whose other load drifts
within a run. Prints both rates (items / summed round time), every round, and the ratio
worker / in-process; the target is >= 0.8 on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from models.content_data import served_text
from models.onnx_embedder import OnnxItemEmbedder
from worker.kafka import all_topics, client_kwargs, ensure_topics, prefixed_topics
from worker.movielens import Movie, load_movies, movie_item_message
from worker.settings import Settings, load_settings
from worker.stack import LocalStack
from worker.stack.worker_process import WorkerProcess

INDEXED_METRIC = "streamrec_items_indexed_total"
TARGET_RATIO = 0.8
SETTLE_S = 1.0


def messages(movies: Sequence[Movie], id_prefix: str = "") -> list[tuple[bytes, bytes]]:
    out = []
    for movie in movies:
        doc = movie_item_message(movie, created_at=time.time())
        doc["item_id"] = item_id = f"{id_prefix}{movie.item_id}"
        out.append((item_id.encode(), orjson.dumps(doc)))
    return out


async def produce(settings: Settings, batch: Sequence[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(settings.items_topic, value, key=key) for key, value in batch]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def wait_indexed(worker: WorkerProcess, count: int, timeout_s: float) -> float:
    """Poll the worker's counter until it reaches `count`; -> when it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (worker.metric(INDEXED_METRIC) or 0.0) >= count:
            return time.perf_counter()
        if worker.problem():
            raise RuntimeError(f"the worker stopped: {worker.problem()}")
        time.sleep(0.02)
    raise TimeoutError(f"{INDEXED_METRIC} did not reach {count} in {timeout_s:.0f} s")


def worker_seconds(
    worker: WorkerProcess, settings: Settings, movies: Sequence[Movie], indexed_after: int
) -> float:
    """Produce the movies; -> seconds until the worker has indexed `indexed_after` items."""
    started = time.perf_counter()
    asyncio.run(produce(settings, messages(movies)))
    return wait_indexed(worker, indexed_after, timeout_s=900) - started


def in_process_seconds(embedder: OnnxItemEmbedder, texts: Sequence[str], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        embedder.embed_items(chunk, [None] * len(chunk), [None] * len(chunk))
    return time.perf_counter() - started


def bench_settings(base: Settings, work_dir: Path) -> Settings:
    """`base` with names no earlier run used and a fresh data directory."""
    run = uuid.uuid4().hex[:8]
    return base.model_copy(
        update={
            **prefixed_topics(f"bench-{run}"),
            "consumer_group": f"bench-{run}",
            "items_collection": f"items_{run}",
            "users_collection": f"users_{run}",
            "data_dir": work_dir / "data",
            "stack_dir": work_dir / "stack",
            "metrics_port": 0,
        }
    )


def run_rounds(
    settings: Settings, movies: Sequence[Movie], rounds: int, warmup: int, threads: int
) -> list[tuple[int, float, float]]:
    """-> per round: (items, worker seconds, in-process seconds)."""
    embedder = OnnxItemEmbedder(threads=threads)
    batch = settings.items_batch_size
    texts = [served_text(movie) for movie in movies]
    in_process_seconds(embedder, texts[:batch], batch)  # sessions open, warm
    results = []
    with LocalStack(settings) as resolved:
        asyncio.run(ensure_topics(resolved, all_topics(resolved)))
        worker = WorkerProcess(resolved, settings.stack_dir / "worker.log").start()
        try:
            asyncio.run(produce(resolved, messages(movies[:warmup], id_prefix="warmup-")))
            indexed = warmup
            wait_indexed(worker, indexed, timeout_s=300)
            for number, part in enumerate(np.array_split(np.arange(len(movies)), rounds)):
                chunk = [movies[i] for i in part]
                indexed += len(chunk)
                # Alternate which goes first, and let the other's tail (the worker's commits,
                # Qdrant's indexing) settle first: neither side pays for the other.
                order = ("worker", "in-process") if number % 2 == 0 else ("in-process", "worker")
                timings: dict[str, float] = {}
                for name in order:
                    time.sleep(SETTLE_S)
                    if name == "worker":
                        timings[name] = worker_seconds(worker, resolved, chunk, indexed)
                    else:
                        chunk_texts = [texts[i] for i in part]
                        timings[name] = in_process_seconds(embedder, chunk_texts, batch)
                worker_s, local_s = timings["worker"], timings["in-process"]
                results.append((len(chunk), worker_s, local_s))
                print(
                    f"round {len(results)}: {len(chunk)} items, worker {len(chunk) / worker_s:.1f}"
                    f"/s, in-process {len(chunk) / local_s:.1f}/s",
                    file=sys.stderr,
                )
            stages = worker.stage_means_ms("items")
            print(
                "worker items stages, mean ms per batch: "
                + ", ".join(f"{name} {value:.1f}" for name, value in sorted(stages.items())),
                file=sys.stderr,
            )
        finally:
            worker.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.ingest_bench", description=__doc__)
    parser.add_argument("--items", type=int, default=1682, help="MovieLens items (<= 1682)")
    parser.add_argument("--rounds", type=int, default=6, help="paired worker/in-process rounds")
    parser.add_argument("--warmup", type=int, default=64, help="items indexed before timing")
    parser.add_argument("--threads", type=int, default=2, help="in-process onnxruntime threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    movies = load_movies()[: args.items]
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as work_dir:
        settings = bench_settings(load_settings(), Path(work_dir))
        rounds = run_rounds(settings, movies, args.rounds, args.warmup, args.threads)
    served = len(movies) / sum(worker_s for _, worker_s, _ in rounds)
    ceiling = len(movies) / sum(local_s for _, _, local_s in rounds)
    ratio = served / ceiling
    print(
        f"items: {len(movies)} MovieLens-100K movies (title, year, genres: text only), "
        f"batch {settings.items_batch_size}, {len(rounds)} paired rounds"
    )
    print(f"worker, Kafka -> Triton -> Qdrant: {served:8.1f} items/s")
    print(f"same ONNX models in-process:       {ceiling:8.1f} items/s")
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"ratio: {ratio:.2f} ({verdict} the {TARGET_RATIO} target)")
    if args.json:
        figures = {
            "items": len(movies),
            "batch_size": settings.items_batch_size,
            "worker_items_per_s": round(served, 1),
            "in_process_items_per_s": round(ceiling, 1),
            "ratio": round(ratio, 3),
            "rounds": [
                {"items": n, "worker_s": round(w, 3), "in_process_s": round(p, 3)}
                for n, w, p in rounds
            ],
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
