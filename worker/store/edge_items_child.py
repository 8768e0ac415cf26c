"""The process an items collection lives in (ITEMS_PROCESS; edge_items_process.py).

    python -m worker.store.edge_items_child <fd> <shard directory> <dim> <quantization>

opens (or creates) the items shard in the directory and serves `Items` calls over the
socket `fd` until told to close or until the socket closes (the worker exited, even by
kill -9: the write-ahead log holds every acknowledged write).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from worker.store.edge_items import ItemsShard
from worker.store.edge_items_process import CLOSE
from worker.store.edge_shards import QUANTIZATIONS

_OWN_CALLS = {"ready": lambda: None, "cpu": time.process_time}


def serve(connection: Connection, items: ItemsShard) -> None:
    """Answer calls until told to close or the socket closes."""
    while True:
        try:
            method, args = connection.recv()
        except (EOFError, OSError):
            return  # the worker is gone; the WAL holds every acknowledged write
        if method == CLOSE:
            try:
                if args[0]:
                    items.flush()
                connection.send((True, None))
            except Exception as exc:  # Edge raises bare Exception for every engine error
                connection.send((False, f"qdrant edge: {exc}"))
            return
        try:
            result = _OWN_CALLS[method]() if method in _OWN_CALLS else getattr(items, method)(*args)
        except Exception as exc:
            connection.send((False, f"qdrant edge: {exc}"))
        else:
            connection.send((True, result))


def main(argv: Sequence[str]) -> int:
    if len(argv) != 4 or not argv[0].isdigit() or argv[3] not in QUANTIZATIONS:
        kinds = "|".join(QUANTIZATIONS)
        usage = f"usage: python -m worker.store.edge_items_child <fd> <dir> <dim> {kinds}"
        print(usage, file=sys.stderr)
        return 2
    # Its life is the socket's: a Ctrl-C or a SIGTERM to the worker's process group would
    # otherwise end it before the worker's own shutdown asks it to flush and exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    connection = Connection(int(argv[0]))
    try:
        items = ItemsShard.open(Path(argv[1]), int(argv[2]), argv[3])  # type: ignore[arg-type]
    except Exception as exc:
        connection.send((False, f"qdrant edge: {exc}"))
        return 1
    serve(connection, items)
    return 0


def lowest_priority() -> None:
    """Every thread of this process at nice 19 (Linux: the value is per thread). The
    kernel takes back the collection's memory as the process exits (gigabytes at a million
    items), in the context of its last thread: that work should yield to the new child
    answering the searches."""
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return  # not Linux
    for thread in threads:
        with contextlib.suppress(OSError):  # a thread that has ended meanwhile
            os.setpriority(os.PRIO_PROCESS, int(thread), 19)


if __name__ == "__main__":
    # os._exit: no interpreter teardown and no close of the shard, whose freeing of a big
    # collection is the second long call this process exists to take off the worker.
    code = main(sys.argv[1:])
    sys.stdout.flush()
    lowest_priority()
    os._exit(code)
