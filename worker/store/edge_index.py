"""Builds an items collection's HNSW index in another process.

The embedded engine holds Python's GIL for a whole call, and `optimize` (the HNSW build)
runs for minutes at 100k items (measured: 132 s): in the worker's process it would freeze
the event loop, the Kafka heartbeats and every thread that long. So the store builds the
index on a copy of the collection in this module's process (`EdgeVectorStore.build_index`):

    python -m worker.store.edge_index <shard directory> <dim> turbo4|int8|none

loads the shard with the store's items configuration, optimises it (HNSW for the vectors,
payload-aware links for the category index, the quantisation asked for), flushes, closes
and exits 0.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from worker.store.edge_shards import QUANTIZATIONS, Quantization, open_shard


def build(directory: Path, dim: int, quantization: Quantization) -> float:
    """Optimise the shard in `directory`; returns the seconds it took."""
    started = time.perf_counter()
    shard = open_shard(directory, dim, indexed=True, quantization=quantization)
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or not args[1].isdigit() or args[2] not in QUANTIZATIONS:
        kinds = "|".join(QUANTIZATIONS)
        print(
            f"usage: python -m worker.store.edge_index <shard dir> <dim> {kinds}", file=sys.stderr
        )
        return 2
    seconds = build(Path(args[0]), int(args[1]), args[2])  # type: ignore[arg-type]
    print(f"indexed {args[0]} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
