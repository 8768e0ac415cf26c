"""The embedded users collection: the fan-out's filters are indexed, its exact search holds
the GIL one partition at a time, it keeps no write-ahead log, and reads come
from the states written last where they can."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from qdrant_edge import EdgeShard

from worker.store import EdgeVectorStore, StoreError, UserState
from worker.store.edge_shards import edge_config
from worker.store.payload import ITEM_SPACE_FIELD, PARTITION_FIELD

T = TypeVar("T")
DIM = 8


def unit(*components: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(components)] = components
    return v / np.linalg.norm(v)


async def test_the_fan_out_filters_are_indexed_in_a_new_and_in_an_older_users_collection(
    tmp_path: Path,
) -> None:
    # Unindexed, a filter is checked against each user's stored payload, history and all.
    # An older version's collection, made before the indexes.
    (tmp_path / "users").mkdir()
    older = EdgeShard.create(str(tmp_path / "users"), edge_config(DIM))
    assert not older.info().payload_schema
    older.close()
    store = EdgeVectorStore(tmp_path, DIM, flush_interval_s=None)
    await store.open()
    try:
        schema = await store._run(lambda: store._shards()[1].info().payload_schema)
        assert {PARTITION_FIELD, ITEM_SPACE_FIELD} <= set(schema)
    finally:
        await store.close()


async def test_a_fan_out_search_makes_one_engine_call_per_item_and_partition(
    tmp_path: Path, engine_calls: Callable[[EdgeVectorStore], list[str]]
) -> None:
    store = EdgeVectorStore(tmp_path, DIM, flush_interval_s=None)
    await store.open()
    try:
        await store.upsert_users(
            [
                UserState(f"u{n}", vector=unit(1, n / 10), partition=n % 3, item_space="s")
                for n in range(9)
            ]
        )
        calls = engine_calls(store)
        near, far = await store.search_users([unit(1), unit(0, 1)], 4, [0, 1, 2], "s")
        assert calls == ["search_users"] * 6
        assert [user for user, _ in near] == ["u0", "u1", "u2", "u3"]
        assert [user for user, _ in far] == ["u8", "u7", "u6", "u5"]
        calls.clear()
        assert len((await store.search_users([unit(1)], 4))[0]) == 4
        assert calls == ["search_users"]  # no partitions asked for: one call
    finally:
        await store.close()


async def test_a_new_users_collection_keeps_no_write_ahead_log_and_an_older_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    # The user-state changelog is the log (changelog/users.py flushes before checkpointing);
    # the engine refuses to change the setting of an existing collection.
    (tmp_path / "old" / "users").mkdir(parents=True)
    EdgeShard.create(str(tmp_path / "old" / "users"), edge_config(DIM, wal=True)).close()
    for directory, wal in ((tmp_path / "new", False), (tmp_path / "old", True)):
        store = EdgeVectorStore(directory, DIM, flush_interval_s=None)
        await store.open()
        try:
            await store.upsert_users([UserState("u", vector=unit(1))])
            await store.flush_users()
        finally:
            await store.close()
        config = json.loads((directory / "users" / "edge_config.json").read_text())
        assert config["wal_enabled"] is wal


async def test_reads_come_from_the_states_written_last_and_match_the_engine(
    tmp_path: Path, engine_calls: Callable[[EdgeVectorStore], list[str]]
) -> None:
    store = EdgeVectorStore(tmp_path, DIM, flush_interval_s=None, user_cache_size=2)
    await store.open()
    try:
        states = [
            UserState(f"u{n}", seen=[f"i{n}"], vector=unit(1, n), partition=n, latest=f"l{n}")
            for n in range(3)
        ]
        await store.upsert_users(states)
        calls = engine_calls(store)
        cached = await store.get_users(["u1", "u2"])
        assert calls == []  # the last two written
        read = await store.get_users(["u0"])  # out of the cache: from the engine
        assert calls == ["get_users"]
        uncached = EdgeVectorStore(tmp_path / "b", DIM, flush_interval_s=None, user_cache_size=0)
        await uncached.open()
        try:
            await uncached.upsert_users(states)
            engine = await uncached.get_users(["u0", "u1", "u2"])
        finally:
            await uncached.close()
        for user_id, got in {**cached, **read}.items():
            want = engine[user_id]
            assert (got.seen, got.partition, got.latest) == (want.seen, want.partition, want.latest)
            assert got.vector is not None and want.vector is not None
            assert np.allclose(got.vector, want.vector)
    finally:
        await store.close()


async def test_a_read_without_vectors_leaves_them_out_and_the_cache_alone(
    tmp_path: Path, engine_calls: Callable[[EdgeVectorStore], list[str]]
) -> None:
    store = EdgeVectorStore(tmp_path, DIM, flush_interval_s=None, user_cache_size=1)
    await store.open()
    try:
        await store.upsert_users([UserState("u0", seen=["a"], vector=unit(1, 0))])
        await store.upsert_users([UserState("u1", seen=["b"], vector=unit(0, 1))])  # cached
        calls = engine_calls(store)

        light = await store.get_users(["u0", "u1"], with_vectors=False)

        assert calls == ["get_users"]  # u0 only
        assert light["u0"].seen == ["a"] and light["u0"].vector is None
        assert light["u1"].vector is not None  # the cache's whole state
        # Not cached: the next read of u0 goes to the engine, and has its vector.
        whole = await store.get_users(["u0"])
        assert calls == ["get_users", "get_users"]
        assert whole["u0"].vector is not None
        assert np.allclose(whole["u0"].vector, unit(1, 0))
    finally:
        await store.close()


async def test_a_deleted_user_or_a_failed_write_is_read_from_the_engine_again(
    tmp_path: Path, engine_calls: Callable[[EdgeVectorStore], list[str]]
) -> None:
    store = EdgeVectorStore(tmp_path, DIM, flush_interval_s=None)
    await store.open()
    try:
        await store.upsert_users([UserState("u1", seen=["a"]), UserState("u2", seen=["b"])])
        await store.delete_users(["u1"])
        assert await store.get_users(["u1"]) == {}

        async def failing(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
            raise StoreError("unreachable")

        run, store._run = store._run, failing  # type: ignore[method-assign]
        with pytest.raises(StoreError):
            await store.upsert_users([UserState("u2", seen=["b", "c"])])
        store._run = run  # type: ignore[method-assign]
        calls = engine_calls(store)
        assert (await store.get_users(["u2"]))["u2"].seen == ["b"]
        assert calls == ["get_users"]
    finally:
        await store.close()
