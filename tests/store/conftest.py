from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from worker.store import EdgeVectorStore

T = TypeVar("T")


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[EdgeVectorStore], list[str]]:
    """`engine_calls(store)` -> the names of the engine calls the store makes from then on
    (each holding the GIL), in order."""

    def watch(store: EdgeVectorStore) -> list[str]:
        calls: list[str] = []
        run = store._run

        async def counted(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
            calls.append(getattr(fn, "__name__", ""))
            return await run(fn, *args, **kwargs)

        monkeypatch.setattr(store, "_run", counted)
        return calls

    return watch
