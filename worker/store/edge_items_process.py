"""An items collection in a process of its own (`ITEMS_PROCESS`).

The embedded engine holds Python's GIL for a whole call. Two calls stay long whatever the
store does: the load of an indexed copy at a swap (0.4-0.5 s at a million items) and the
close of the collection it replaces (1.3 s for an unindexed million). In the worker's
process either freezes every search, heartbeat and thread. Here each collection lives in a
child process that serves `Items` calls over a socket: the child loading a copy holds its
own GIL while the worker's searches go on against the old child, and the replaced child
exits without freeing its memory at all.

The child is `python -m worker.store.edge_items_child` (see there).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from worker.store.base import SearchRequest, StoreError, StoreUnavailable
from worker.store.edge_items import (
    Fields,
    NewPoint,
    Record,
    Scroll,
    SearchParams,
    unpack_hits,
    unpack_records,
)
from worker.store.edge_query import PointId
from worker.store.edge_shards import Quantization

CHILD = "worker.store.edge_items_child"
CLOSE = "close"


class ItemsProcess:
    """`Items` forwarded to a child process; a call at a time (a lock orders them). A child
    that died is started again by the next call (the collection reopened from its files and
    write-ahead log); the call that found it dead raises StoreUnavailable, to be retried."""

    def __init__(self, directory: Path, dim: int, quantization: Quantization) -> None:
        self._args = (str(directory), str(dim), quantization)
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def start(cls, directory: Path, dim: int, quantization: Quantization) -> ItemsProcess:
        """Start a child that opens (or creates) the shard; returns once it has. Blocking:
        run it on a thread other than the store's, so searches go on meanwhile."""
        items = cls(directory, dim, quantization)
        with items._lock:
            items._spawn()
        return items

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", CHILD, str(theirs.fileno()), *self._args],
                pass_fds=[theirs.fileno()],
            )
            self._connection = Connection(ours.detach())
        try:
            self._exchange("ready")
        except BaseException:
            self._end()
            raise

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the items collection is closed")
            if self._connection is None:  # the last child died
                try:
                    self._spawn()
                except StoreError as exc:  # whatever it says, not the request's fault
                    raise StoreUnavailable(f"the items process did not restart: {exc}") from exc
            return self._exchange(method, *args)

    def _end(self) -> None:
        """Close our end and reap the child (killed unless it is exiting already)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is not None:
            if self._process.poll() is None and not self._closed:
                self._process.kill()
            self._process.wait()

    def _exchange(self, method: str, *args: Any) -> Any:
        assert self._connection is not None and self._process is not None
        try:
            self._connection.send((method, args))
            ok, result = self._connection.recv()
        except (EOFError, OSError) as exc:
            self._end()
            raise StoreUnavailable(
                f"the items process exited ({self._process.returncode}): {exc}"
            ) from exc
        if not ok:
            raise StoreError(result)
        return result

    def upsert(self, points: Sequence[NewPoint]) -> None:
        self._call("upsert", points)

    def delete(self, points: Sequence[int]) -> None:
        self._call("delete", points)

    def set_payloads(self, payloads: Sequence[tuple[int, dict[str, Any]]], lenient: bool) -> None:
        self._call("set_payloads", payloads, lenient)

    def retrieve(self, points: Sequence[int], fields: Fields, with_vector: bool) -> list[Record]:
        return unpack_records(self._call("retrieve_packed", points, fields, with_vector))

    def scroll(self, request: Scroll) -> tuple[list[Record], PointId | None]:
        records, offset = self._call("scroll_packed", request)
        return unpack_records(records), offset

    def search(
        self, requests: Sequence[SearchRequest], params: SearchParams
    ) -> list[list[tuple[int, float]]]:
        return unpack_hits(self._call("search_packed", requests, params))

    def count(self, exact: bool) -> int:
        return int(self._call("count", exact))

    def indexing(self) -> tuple[int, int]:
        points, indexed = self._call("indexing")
        return int(points), int(indexed)

    def flush(self) -> None:
        self._call("flush")

    def optimize(self) -> bool:
        return bool(self._call("optimize"))

    def cpu_s(self) -> float:
        """The child's CPU seconds so far (benchmarks add it to the worker's)."""
        return float(self._call("cpu"))

    def close(self, flush: bool = True) -> None:
        """The child flushes (if asked) and exits without freeing the collection's memory:
        the operating system takes it back at once. A dead child is left dead."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._connection is None:
                return
            try:
                self._exchange(CLOSE, flush)
            finally:
                self._end()
