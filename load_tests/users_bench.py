"""What long histories and many users cost the events path's user state.

    python -m load_tests users [--users 10000,100000,300000] [--windows 50,200,1000]
                               [--out results/users.json] [--index]

Per users count N, into a fresh `EdgeVectorStore` (the worker's own): N users with short
states (20 events, a 256-d vector), at upsert items/s. Then, per history window W, 64 of
them get W-event histories (and W seen items, W event-id digests, as HISTORY_WINDOW =
SEEN_WINDOW = W would keep), and one micro-batch's user-state work is timed, CPU ms per
batch of 64 users (medians of 20 rounds):
- `get_users` (one store call: from the engine, and from the cache of the states written
  last), `apply_events` (one new event each), `upsert_users` (one call): what
  `load_state` and the checkpoint's save cost;
- `search_users` for one item (the new-item fan-out's nearest users; the users collection
  is searched exactly): with no filter, and as the fan-out asks, for the users of the
  events partitions a worker owns (all 4, or 1 of 4) in the current item space, and as a
  worker that owns every partition asks (the item space only).
Reading across a row says what the window costs; down a column, what the users count costs.
`--index` then indexes each size's users collection as the worker would (users_index_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from load_tests.procfs import tree_rss_mb
from load_tests.users_index_bench import PROBES, measure_index
from worker.events import UserEvent
from worker.runtime import create_store
from worker.settings import DEFAULT_EVENT_WEIGHTS, Settings, load_settings
from worker.store import EdgeVectorStore, Interaction, UserState
from worker.user_state import apply_events, event_key

DIM = 256
BATCH = 64
PARTITIONS = 4  # the events topic's default (TOPIC_PARTITIONS); users spread evenly
SPACE = "bench-space"
ROUNDS = 20
SHORT = 20


# Users' tastes in clusters, as trained user vectors are (random vectors in 256-d are
# all about equally far apart, which no real index is asked to tell apart).
_CENTRES = np.random.default_rng(0).standard_normal((500, DIM))
_CENTRES /= np.linalg.norm(_CENTRES, axis=1, keepdims=True)


def _taste(rng: np.random.Generator) -> np.ndarray:
    noise = 0.5 * rng.standard_normal(DIM) / np.sqrt(DIM)
    return (_CENTRES[rng.integers(len(_CENTRES))] + noise).astype(np.float32)


def _state(user_id: str, events: int, rng: np.random.Generator) -> UserState:
    items = [str(i) for i in rng.integers(0, 100_000, events)]
    vector = _taste(rng)
    return UserState(
        user_id,
        history=[
            Interaction(i, "click", 1.0, 1e9 + n, f"{user_id}-{n}") for n, i in enumerate(items)
        ],
        seen=list(dict.fromkeys(items)),
        vector=vector / np.linalg.norm(vector),
        updated_at=1e9 + events,
        event_keys=np.array([event_key(f"{user_id}-{n}") for n in range(events)], "<u8").tobytes(),
        partition=int(user_id[1:]) % PARTITIONS,
        item_space=SPACE,
    )


def long_lived(user_id: str, events: int, items: int, settings: Settings) -> UserState:
    """A user with `events` past events on catalogue items "1".."items" (distinct, as many
    as the catalogue holds; the windows keep what they would), no vector yet."""
    rng = np.random.default_rng(int(event_key(user_id)) % 2**32)
    liked = [str(i + 1) for i in rng.choice(items, min(events, items), replace=False)]
    now = time.time()
    history = [
        Interaction(item, "view", 1.0, now - 3600 + n, f"{user_id}-past-{n}")
        for n, item in enumerate(liked)
    ]
    keys = [event_key(f"{user_id}-past-{n}") for n in range(events)][-settings.seen_window :]
    return UserState(
        user_id,
        history=history[-settings.history_window :],
        seen=liked[-settings.seen_window :],
        updated_at=now - 3600 + len(liked),
        event_keys=np.array(keys, "<u8").tobytes(),
    )


async def prefill_users(
    settings: Settings, user_ids: Sequence[str], events: int, items: int
) -> None:
    """Long-lived users (see `long_lived`) written straight into the embedded store a worker
    with these settings opens: a load test's users as they would be after `events` events."""
    store = create_store(settings)
    if not isinstance(store, EdgeVectorStore):
        raise ValueError("long-lived users need the embedded store")
    await store.open()
    try:
        for first in range(0, len(user_ids), 500):
            chunk = user_ids[first : first + 500]
            await store.upsert_users([long_lived(u, events, items, settings) for u in chunk])
        await store.flush()
    finally:
        await store.close()


async def _fill(store: EdgeVectorStore, users: int, rng: np.random.Generator) -> float:
    started = time.perf_counter()
    for first in range(0, users, 1000):
        batch = [_state(f"u{n}", SHORT, rng) for n in range(first, min(first + 1000, users))]
        await store.upsert_users(batch)
    return users / (time.perf_counter() - started)


async def _cpu_ms(step: Callable[[], Any]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.process_time()
        result = step()
        if asyncio.iscoroutine(result):
            await result
        times.append(time.process_time() - started)
    return round(1000 * statistics.median(times), 3)


async def _window(
    store: EdgeVectorStore, users: int, window: int, rng: np.random.Generator
) -> dict[str, Any]:
    ids = [f"u{n}" for n in rng.choice(users, BATCH, replace=False)]
    states = [_state(user_id, window, rng) for user_id in ids]
    await store.upsert_users(states)
    event = [
        UserEvent(f"new-{n}", user_id, "42", "click", None, 2e9) for n, user_id in enumerate(ids)
    ]

    def apply() -> None:
        for state, new in zip(states, event, strict=True):
            apply_events(
                state,
                [new],
                weights=DEFAULT_EVENT_WEIGHTS,
                history_window=window,
                seen_window=window,
            )

    probe = states[0].vector
    assert probe is not None

    def read_engine() -> Awaitable[dict[str, UserState]]:
        store.user_cache.clear()  # every state from the engine, as after a restart
        return store.get_users(ids)

    return {
        "window": window,
        "get_users_ms": await _cpu_ms(read_engine),
        "get_users_cached_ms": await _cpu_ms(lambda: store.get_users(ids)),
        "apply_events_ms": await _cpu_ms(apply),
        "upsert_users_ms": await _cpu_ms(lambda: store.upsert_users(states)),
        "search_users_ms": await _cpu_ms(lambda: store.search_users([probe], 20)),
        "fanout_all_partitions_ms": await _cpu_ms(
            lambda: store.search_users([probe], 20, list(range(PARTITIONS)), SPACE)
        ),
        # What a worker that owns every partition asks (worker/fanout.py): no partition filter.
        "fanout_owning_every_partition_ms": await _cpu_ms(
            lambda: store.search_users([probe], 20, None, SPACE)
        ),
        "fanout_one_partition_ms": await _cpu_ms(
            lambda: store.search_users([probe], 20, [0], SPACE)
        ),
    }


async def measure(
    users: int, windows: Sequence[int], work: Path, index: bool = False
) -> dict[str, Any]:
    rng = np.random.default_rng(users)
    store = EdgeVectorStore(work / f"users-{users}", DIM, flush_interval_s=None)
    await store.open()
    try:
        rate = await _fill(store, users, rng)
        rows = [await _window(store, users, window, rng) for window in windows]
        row = {
            "users": users,
            "upsert_users_per_s": round(rate),
            "rss_mb": round(tree_rss_mb(os.getpid()), 1),
            "windows": rows,
        }
        if index:
            probes = [_taste(rng) for _ in range(PROBES)]
            rewrites = [_state(f"u{n}", SHORT, rng) for n in rng.choice(users, 640, replace=False)]
            row["users_index"] = await measure_index(store, probes, rewrites, PARTITIONS, SPACE)
        return row
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests users", description=__doc__)
    parser.add_argument("--users", default="10000,100000,300000")
    parser.add_argument("--windows", default="50,200,1000")
    parser.add_argument("--out", type=Path, default=Path("results/users.json"))
    parser.add_argument(
        "--index",
        action="store_true",
        help="then index the users collection in another process (as USERS_INDEX_AFTER "
        "does) and measure the fan-out's search before and after, and the build's stalls",
    )
    args = parser.parse_args(argv)
    gc_threshold = load_settings().gc_threshold
    if gc_threshold:  # as the worker's process runs (worker.__main__, worker/runtime.py)
        gc.set_threshold(gc_threshold)
        gc.freeze()
    windows = [int(w) for w in args.windows.split(",")]
    report = []
    with tempfile.TemporaryDirectory(prefix="users-bench-") as tmp:
        for users in (int(n) for n in args.users.split(",")):
            row = asyncio.run(measure(users, windows, Path(tmp), args.index))
            print(json.dumps(row), flush=True)
            report.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"batch_users": BATCH, "rounds": ROUNDS, "sizes": report}, indent=2) + "\n"
    )
    return 0
