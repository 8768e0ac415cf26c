"""Items collections in processes of their own (ITEMS_PROCESS): failures, exits, and
searches going on while an indexed copy loads."""

from __future__ import annotations

import asyncio
import pickle
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from worker.store import EdgeVectorStore, ItemRecord, SearchRequest, StoreError, StoreUnavailable
from worker.store.edge_items import ItemsShard, pack_records, unpack_records
from worker.store.edge_items_process import ItemsProcess
from worker.store.payload import VECTOR_NAME

DIM = 16
ITEMS = 500


def vectors(n: int) -> np.ndarray:
    rows = np.random.default_rng(3).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def child(store: EdgeVectorStore) -> ItemsProcess:
    items = store._shards()[0]
    assert isinstance(items, ItemsProcess)
    return items


async def test_a_dead_items_process_is_unavailable_once_then_restarted_with_its_writes(
    tmp_path: Path,
) -> None:
    store = EdgeVectorStore(tmp_path, DIM, items_process=True, item_cache_size=0)
    await store.open()
    try:
        rows = vectors(10)
        await store.upsert_items([ItemRecord(str(i), rows[i]) for i in range(10)])
        dead = child(store)._process
        assert dead is not None
        dead.kill()
        with pytest.raises(StoreUnavailable, match="items process exited"):
            await store.search_items([SearchRequest(rows[0], 3)])  # retried by the worker

        (hits,) = await store.search_items([SearchRequest(rows[0], 3)])
        assert hits[0].item_id == "0" and await store.count_items() == 10
        assert child(store)._process is not dead
    finally:
        await store.close()


async def test_an_engine_error_in_the_items_process_is_a_store_error(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM, items_process=True)
    await store.open()
    try:
        wrong = np.ones(DIM + 1, dtype=np.float32)
        with pytest.raises(StoreError, match="qdrant edge") as raised:
            await store.upsert_items([ItemRecord("x", wrong)])
        assert not isinstance(raised.value, StoreUnavailable)
        assert await store.count_items() == 0  # and it still serves
    finally:
        await store.close()


def test_the_items_process_ignores_signals_exits_when_the_worker_is_gone_keeps_its_writes(
    tmp_path: Path,
) -> None:
    items = ItemsProcess.start(tmp_path, DIM, "none")
    items.upsert([(7, [1.0] + [0.0] * (DIM - 1), {"item_id": "7"})])
    assert items._connection is not None and items._process is not None
    items._process.send_signal(signal.SIGINT)  # a Ctrl-C to the worker's process group
    items._process.send_signal(signal.SIGTERM)
    assert items.count(True) == 1  # its life is the socket's
    items._connection.close()  # as when the worker is killed: no close message
    assert items._process.wait(timeout=10) == 0

    reopened = ItemsShard.open(tmp_path, DIM, "none")
    try:
        assert reopened.count(True) == 1  # from the write-ahead log
    finally:
        reopened.close()


async def test_a_replaced_items_process_exits_after_an_index_build(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM, items_process=True)
    await store.open()
    try:
        rows = vectors(ITEMS)
        await store.upsert_items([ItemRecord(str(i), rows[i]) for i in range(ITEMS)])
        before = child(store)._process
        await store.build_index()
        assert before is not None and before.poll() == 0
        assert child(store)._process is not None and child(store)._process.poll() is None
        assert await store.unindexed_items() == 0 and await store.count_items() == ITEMS
    finally:
        await store.close()
    assert len(list(tmp_path.glob("items*"))) == 1  # noqa: ASYNC240


async def test_searches_go_on_while_the_indexed_copy_loads_in_its_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In the worker's process the load is an engine call, holding the
    # GIL: no search could run meanwhile. Here the load is made to last 0.5 s.
    loading = threading.Event()
    start = ItemsProcess.start

    def slow_start(*args: object) -> ItemsProcess:
        loading.set()
        time.sleep(0.5)
        items = start(*args)  # type: ignore[arg-type]
        loading.clear()
        return items

    store = EdgeVectorStore(tmp_path, DIM, items_process=True)
    await store.open()
    monkeypatch.setattr(ItemsProcess, "start", slow_start)
    try:
        rows = vectors(ITEMS)
        await store.upsert_items([ItemRecord(str(i), rows[i]) for i in range(ITEMS)])
        build = asyncio.create_task(store.build_index())
        during_load = 0
        while not build.done():
            hits = await store.search_items([SearchRequest(rows[1], 1)])
            assert hits[0][0].item_id == "1"
            during_load += loading.is_set()
            await asyncio.sleep(0.005)
        await build
        assert during_load >= 10
    finally:
        await store.close()


def test_records_cross_the_socket_packed_each_vector_its_own_array() -> None:
    records = [
        SimpleNamespace(id=7, payload={"item_id": "a"}, vector={VECTOR_NAME: [0.5, 1.5]}),
        SimpleNamespace(id=8, payload=None, vector={}),  # a point without the vector
        SimpleNamespace(id=9, payload={"item_id": "c"}, vector={VECTOR_NAME: [2.0, 3.0]}),
    ]
    packed = pickle.loads(pickle.dumps(pack_records(records)))
    assert isinstance(packed[2], np.ndarray) and packed[2].shape == (2, 2)  # one buffer

    (a, none, c) = unpack_records(packed)
    assert (a[0], a[1], none, c[0], c[1]) == (
        7,
        {"item_id": "a"},
        (8, None, None),
        9,
        {"item_id": "c"},
    )
    assert a[2] is not None and c[2] is not None
    assert a[2].tolist() == [0.5, 1.5] and c[2].tolist() == [2.0, 3.0]
    # A copy each: a cached item keeps its own 1 KB, not the whole batch's array.
    assert a[2].base is None and c[2].base is None and a[2].dtype == np.float32
    assert unpack_records(pack_records([])) == []


async def test_items_read_through_the_items_process_keep_their_vectors(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path, DIM, items_process=True, item_cache_size=0)
    await store.open()
    try:
        rows = vectors(20)
        await store.upsert_items([ItemRecord(str(i), rows[i], category="c") for i in range(20)])
        found = await store.get_items([str(i) for i in range(0, 20, 3)] + ["missing"])
        assert sorted(found, key=int) == [str(i) for i in range(0, 20, 3)]
        for item_id, item in found.items():
            assert item.vector is not None and item.category == "c"
            np.testing.assert_allclose(item.vector, rows[int(item_id)], rtol=1e-6)
    finally:
        await store.close()
