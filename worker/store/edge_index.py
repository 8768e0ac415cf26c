"""Builds an items collection's HNSW index in another process.

The embedded engine holds Python's GIL for a whole call, and `optimize` (the HNSW build)
runs for minutes at 100k items (measured: 132 s): in the worker's process it would freeze
the event loop, the Kafka heartbeats and every thread that long. So the store builds the
index on a copy of the collection in this module's process (`EdgeVectorStore.build_index`):

    python -m worker.store.edge_index <shard directory> <dim> turbo4|int8|none|users

loads the shard with the store's items configuration, optimises it (HNSW for the vectors,
payload-aware links for the category index, the quantisation asked for; `users`: a copy of
the users collection, edge_users_index.py), flushes, closes,
reads the shard's files back into the page cache, prints the seconds each step took as one
JSON line and exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from worker.store.edge_shards import (
    QUANTIZATIONS,
    USERS,
    Quantization,
    index_users_copy,
    open_shard,
)


def build(directory: Path, dim: int, kind: Quantization | str) -> dict[str, float]:
    """Optimise the shard in `directory` (an items collection with this quantisation, or
    the users'); -> the seconds each step took."""
    steps = Steps()
    if kind == USERS:
        shard = index_users_copy(directory, dim)
    else:
        shard = open_shard(directory, dim, indexed=True, quantization=kind)  # type: ignore[arg-type]
    try:
        steps.done("load_s")
        shard.optimize()
        steps.done("optimize_s")
        shard.flush()
        steps.done("flush_s")
    finally:
        shard.close()
        steps.done("close_s")
    return steps.seconds


class Steps:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step], self._last = round(now - self._last, 2), now


def read_into_page_cache(directory: Path) -> int:
    """Read every file under `directory` once; -> the bytes read. Closing a shard drops
    its files from the page cache, so the worker's load of the copy at the swap (an engine
    call, holding the worker's GIL) read them from disk: at 1M items 2.9-3.2 s against
    0.5-0.7 s with them cached. Read here, in the build's process, they cost it nothing.
    The reads come from the disk (~1.1 GB/s at 1M items): none of the files the build
    wrote are still in the page cache by then (fincore). Capped at 400 MB/s they took
    5.4 s instead of 1.9, and the slowest search batch meanwhile was no faster (574
    against 312 ms), so they run at full speed."""
    total, buffer = 0, bytearray(1 << 20)
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with path.open("rb", buffering=0) as file:
                while count := file.readinto(buffer):
                    total += count
    return total


# Below the worker's priority: the build is background work, and on a machine with few cores
# the worker's searches would otherwise wait for it (1.5-2x slower batches during a build).
BUILD_NICENESS = 10


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or not args[1].isdigit() or args[2] not in (*QUANTIZATIONS, USERS):
        kinds = "|".join((*QUANTIZATIONS, USERS))
        print(
            f"usage: python -m worker.store.edge_index <shard dir> <dim> {kinds}", file=sys.stderr
        )
        return 2
    os.nice(BUILD_NICENESS)
    seconds = build(Path(args[0]), int(args[1]), args[2])
    started = time.perf_counter()
    size = read_into_page_cache(Path(args[0]))
    seconds["read_back_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps({**seconds, "read_back_mb": round(size / 1e6)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
