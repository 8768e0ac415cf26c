"""Where the embedded store's calls run: the engine's own on the event loop (they hold the
GIL throughout, so a thread would free nothing), an items process's on the store's thread
(they wait on a socket, and the loop goes on meanwhile)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from worker.store import EdgeVectorStore, ItemRecord, SearchRequest
from worker.store.edge_items import ItemsShard, SearchParams
from worker.store.edge_items_process import ItemsProcess

DIM = 8


def _items(n: int) -> list[ItemRecord]:
    rows = np.random.default_rng(5).standard_normal((n, DIM)).astype(np.float32)
    return [ItemRecord(f"i{k}", row / np.linalg.norm(row)) for k, row in enumerate(rows)]


def _threads_of_searches(
    monkeypatch: pytest.MonkeyPatch, kind: type[ItemsShard] | type[ItemsProcess]
) -> list[int]:
    threads: list[int] = []
    search = kind.search

    def recorded(self: Any, requests: Sequence[SearchRequest], params: SearchParams) -> Any:
        threads.append(threading.get_ident())
        return search(self, requests, params)

    monkeypatch.setattr(kind, "search", recorded)
    return threads


@pytest.mark.parametrize("items_process", [False, True], ids=["in process", "items process"])
async def test_engine_calls_run_on_the_loop_and_an_items_process_calls_off_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items_process: bool
) -> None:
    kind = ItemsProcess if items_process else ItemsShard
    threads = _threads_of_searches(monkeypatch, kind)
    store = EdgeVectorStore(tmp_path, DIM, items_process=items_process, exact_search_max_items=0)
    await store.open()
    try:
        items = _items(20)
        await store.upsert_items(items)
        found = await store.search_items([SearchRequest(items[0].vector, limit=3)])
    finally:
        await store.close()
    assert found[0][0].item_id == "i0"
    on_loop = [thread == threading.get_ident() for thread in threads]
    assert on_loop == [not items_process]
