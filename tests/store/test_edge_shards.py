"""An items collection's memory-mapped parts are in the page cache once it is loaded, so a
restarted worker's first searches do not read the disk page by page."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import numpy as np
import pytest
from qdrant_edge import Point, UpdateOperation

from worker.store.edge_shards import Quantization, close_shard, open_shard
from worker.store.payload import VECTOR_NAME

DIM = 64
ITEMS = 4000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident_share(path: Path) -> float:
    """The share of the file's pages in the page cache (mincore on a fresh mapping, which
    reads nothing in)."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    with path.open("rb") as file:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, file.fileno(), 0)
    assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    try:
        flags = ctypes.create_string_buffer(pages)
        assert _libc.mincore(address, size, flags) == 0, os.strerror(ctypes.get_errno())
        return sum(byte & 1 for byte in flags.raw) / pages
    finally:
        _libc.munmap(address, size)


def evict(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def segment_files(directory: Path) -> dict[str, Path]:
    """The indexed segment's vectors, compressed vectors and payloads, by role."""
    found = {
        "vectors": sorted(directory.glob("segments/*/vector_storage-*/matrix.dat")),
        "compressed": sorted(directory.glob("segments/*/vector_storage-*/quantized.data")),
        "payloads": sorted(directory.glob("segments/*/payload_storage/page_*.dat")),
    }
    assert all(found.values()), found
    return {role: max(paths, key=lambda p: p.stat().st_size) for role, paths in found.items()}


@pytest.mark.parametrize("quantization", ["turbo4", "int8"])
def test_a_loaded_item_collection_has_its_vectors_and_payloads_in_the_page_cache(
    tmp_path: Path, quantization: Quantization
) -> None:
    rows = np.random.default_rng(0).standard_normal((ITEMS, DIM)).astype(np.float32)
    shard = open_shard(tmp_path, DIM, indexed=True, quantization=quantization)
    points = [
        Point(i, {VECTOR_NAME: rows[i].tolist()}, {"category": f"c{i % 7}"}) for i in range(ITEMS)
    ]
    shard.update(UpdateOperation.upsert_points(points))
    shard.optimize()
    close_shard(shard)
    files = segment_files(tmp_path)
    evict(tmp_path)
    # What a restart finds after the page cache let the files go (tmp_path on a disk).
    assert max(resident_share(path) for path in files.values()) < 0.5

    shard = open_shard(tmp_path, DIM, indexed=True, quantization=quantization)
    try:
        shares = {role: resident_share(path) for role, path in files.items()}
    finally:
        shard.close()
    assert min(shares.values()) > 0.9, shares
