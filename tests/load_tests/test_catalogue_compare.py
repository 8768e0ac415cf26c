from pathlib import Path

from load_tests.catalogue_compare import alternating_cpu_ms, compare_sizes
from load_tests.synthetic_items import DIM, clustered, fusion_shape, queries
from worker.store import EdgeVectorStore, ItemRecord


async def _store(path: Path, size: int) -> None:
    vectors, labels = clustered(size, fusion_shape())
    store = EdgeVectorStore(path, DIM, flush_interval_s=None, quantization="turbo4")
    await store.open()
    try:
        await store.upsert_items(
            [ItemRecord(str(i), vectors[i], category=f"c{labels[i] % 20}") for i in range(size)]
        )
        await store.build_index()
    finally:
        await store.close()


async def test_two_sizes_are_compared_at_each_hnsw_ef_with_their_ratio(tmp_path: Path) -> None:
    await _store(tmp_path / "small", 300)
    await _store(tmp_path / "large", 900)
    shape = fusion_shape()

    result = await compare_sizes(
        (tmp_path / "small", queries(300, shape)),
        (tmp_path / "large", queries(900, shape)),
        DIM,
        "turbo4",
        (64, 128),
    )

    assert set(result["by_hnsw_ef"]) == {64, 128}
    for row in result["by_hnsw_ef"].values():
        assert row["small_cpu_ms_per_query"] > 0 and row["large_cpu_ms_per_query"] > 0
        expected = row["large_cpu_ms_per_query"] / row["small_cpu_ms_per_query"]
        assert abs(row["ratio"] - expected) < 0.05 * expected + 0.01
    # A worker scans the small catalogue in its own process: that against the large one.
    scan = result["small_exact_scan"]
    assert scan["hnsw_ef"] == 128 and scan["small_cpu_ms_per_query"] > 0
    assert scan["large_cpu_ms_per_query"] > 0 and scan["ratio"] > 0


async def test_alternating_passes_give_one_median_per_store(tmp_path: Path) -> None:
    await _store(tmp_path / "s", 300)
    store = EdgeVectorStore(tmp_path / "s", DIM, flush_interval_s=None, quantization="turbo4")
    await store.open()
    try:
        requests = queries(300, fusion_shape())[:20]
        medians = await alternating_cpu_ms([(store, requests), (store, requests[:10])], rounds=3)
    finally:
        await store.close()
    assert len(medians) == 2 and all(m > 0 for m in medians)
