"""`python -m worker demo`: the whole product on the embedded defaults.

Starts the local broker and tritonserver, runs the worker as a child process with Qdrant Edge
in a scratch directory, publishes the MovieLens-100K catalogue (with progress bars), then
replays a few users' ratings as live events and prints each recommendation as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from tqdm import tqdm

from worker.kafka import all_topics, client_kwargs, ensure_topics
from worker.movielens import Movie, Rating, load_movies, load_ratings, movie_item_message
from worker.settings import Settings
from worker.stack import LocalStack
from worker.stack.answers import answer_to
from worker.stack.worker_process import WorkerProcess

SHOW_TOP = 5


def run_demo(settings: Settings, *, users: int, events_per_user: int) -> int:
    logging.getLogger("aiokafka").setLevel(logging.WARNING)  # keep the live output readable
    with tempfile.TemporaryDirectory(prefix="streamrec-demo-") as scratch:
        # Fresh embedded store per demo so reruns start from an empty catalogue.
        base = settings.model_copy(update={"data_dir": Path(scratch), "log_level": "WARNING"})
        print("starting the local stack (broker, tritonserver)...", flush=True)
        t0 = time.monotonic()
        with LocalStack(base) as resolved:
            print(
                f"  broker {resolved.kafka_bootstrap_servers}, triton {resolved.triton_url} "
                f"({time.monotonic() - t0:.1f}s)",
                flush=True,
            )
            asyncio.run(ensure_topics(resolved, all_topics(resolved)))
            log_path = resolved.stack_dir / "logs" / "worker-demo.log"
            print(f"starting the worker (log: {log_path})...", flush=True)
            with WorkerProcess(resolved, log_path) as worker:
                asyncio.run(_demo(resolved, worker, users, events_per_user))
    return 0


async def _demo(settings: Settings, worker: WorkerProcess, users: int, per_user: int) -> None:
    movies = {m.item_id: m for m in load_movies()}
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5, acks="all")
    await producer.start()
    try:
        await _load_catalogue(settings, worker, producer, list(movies.values()))
        await _replay(settings, producer, movies, users, per_user)
    finally:
        await producer.stop()


async def _load_catalogue(
    settings: Settings, worker: WorkerProcess, producer: AIOKafkaProducer, movies: list[Movie]
) -> None:
    now = time.time()
    pending = []
    for movie in tqdm(movies, desc="catalogue -> items topic", unit="item"):
        value = orjson.dumps(movie_item_message(movie, created_at=now))
        pending.append(await producer.send(settings.items_topic, value, key=movie.item_id.encode()))
    await asyncio.gather(*pending)
    with tqdm(total=len(movies), desc="indexed by the worker   ", unit="item") as bar:
        deadline = time.monotonic() + 600
        indexed = 0.0
        while indexed < len(movies) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            indexed = worker.metric("streamrec_items_indexed_total") or 0.0
            bar.update(int(indexed) - bar.n)
    if indexed < len(movies):
        raise RuntimeError(f"only {indexed:.0f}/{len(movies)} items indexed; see the worker log")


def _pick_users(ratings: list[Rating], users: int, per_user: int) -> list[list[Rating]]:
    """The first users (by id) with enough ratings; each user's earliest ratings in order."""
    by_user: dict[str, list[Rating]] = {}
    for r in ratings:
        by_user.setdefault(r.user_id, []).append(r)
    chosen = sorted((u for u, rs in by_user.items() if len(rs) >= per_user), key=int)[:users]
    return [by_user[u][:per_user] for u in chosen]


async def _replay(
    settings: Settings,
    producer: AIOKafkaProducer,
    movies: dict[str, Movie],
    users: int,
    per_user: int,
) -> None:
    histories = _pick_users(load_ratings(), users, per_user)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        # Manual assignment at the end of the log: no group join, nothing old replayed.
        parts = consumer.partitions_for_topic(settings.recommendations_topic) or set()
        tps = [TopicPartition(settings.recommendations_topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        print(f"\nreplaying {per_user} ratings for each of {len(histories)} users:\n")
        for step in range(per_user):
            for history in histories:
                await _one_event(settings, producer, consumer, movies, history[step])
    finally:
        await consumer.stop()


async def _one_event(
    settings: Settings,
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    movies: dict[str, Movie],
    rating: Rating,
) -> None:
    event_id = uuid.uuid4().hex
    sent_at = time.time()
    event = {
        "event_id": event_id,
        "user_id": rating.user_id,
        "item_id": rating.item_id,
        "type": "rating",
        "value": rating.rating,
        "ts": sent_at,
    }
    await producer.send_and_wait(
        settings.events_topic, orjson.dumps(event), key=rating.user_id.encode()
    )
    rec = await answer_to(consumer, event_id)
    if rec is None:
        print(f"user {rating.user_id}: no recommendation within 30 s")
        return
    _print(rec, rating, movies, time.time() - sent_at)


def _print(rec: dict, rating: Rating, movies: dict[str, Movie], latency_s: float) -> None:
    stars = "★" * int(rating.rating) + "☆" * (5 - int(rating.rating))
    title = movies[rating.item_id].title if rating.item_id in movies else rating.item_id
    print(f"user {rating.user_id:>4} rated {stars} {title[:48]:<48} -> {latency_s * 1000:6.1f} ms")
    for rank, item in enumerate(rec["items"][:SHOW_TOP], 1):
        movie = movies.get(item["item_id"])
        label = f"{movie.title} [{', '.join(movie.genres)}]" if movie else item["item_id"]
        print(f"      {rank}. {label[:70]:<70} {item['score']:.3f}  {_why(item, movies)}")


def _why(item: dict, movies: dict[str, Movie]) -> str:
    """The item's first reason, in words (see worker/reasons.py)."""
    reason = (item.get("reasons") or [{}])[0]
    named = movies.get(reason.get("item_id", ""))
    if reason.get("kind") == "similar_to" and named:
        return f"like {named.title[:30]}"
    if reason.get("kind") == "also_consumed_with" and named:
        return f"watched with {named.title[:30]}"
    return str(reason.get("kind", "")).replace("_", " ")
