from pathlib import Path

import numpy as np

from load_tests.catalogue_bench import measure, prefill_store
from load_tests.synthetic_items import clustered, fusion_shape, isotropic_shape
from worker.runtime import create_store
from worker.settings import load_settings
from worker.store import EdgeVectorStore


def test_fusion_shaped_vectors_keep_the_trained_items_spectrum() -> None:
    shape = fusion_shape()
    vectors, labels = clustered(4000, shape)
    assert vectors.shape == (4000, 256) and labels.max() < len(shape.centres)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    # Most of the variance in few directions, unlike flat noise.
    def top10_share(x: np.ndarray) -> float:
        s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
        return float(s[:10].sum() / s.sum())

    flat, _ = clustered(4000, isotropic_shape())
    assert top10_share(vectors) > 0.4 > top10_share(flat)


async def test_a_small_catalogue_is_measured_indexed_and_reopened(tmp_path: Path) -> None:
    row = await measure(2000, tmp_path, in_place=False, quantization="turbo4", shape=fusion_shape())
    assert row["items"] == 2000 and row["upsert_items_per_s"] > 0
    assert row["indexed"]["recall_at_50"] >= 0.95
    assert row["index_build"]["mode"] == "another process"
    assert set(row["indexed_by_hnsw_ef"]) == {64, 128, 256, 512}
    assert set(row["indexed_by_oversampling"]) == {1.0, 1.5, 2.0, 3.0}
    assert all(r["recall_at_50"] >= 0.95 for r in row["indexed_by_oversampling"].values())
    assert row["rss_mib"] > 0 and row["open_s"] > 0
    # The rebuild's batches against a steady window before it.
    spread = row["searches_during_a_rebuild"]["batch_ms_spread"]
    for window in ("before", "during"):
        assert 0 < spread[window]["p50"] <= spread[window]["p99"] <= spread[window]["max"]


async def test_a_prefilled_store_opens_with_the_synthetic_items_indexed(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    await prefill_store(settings, 2000)

    store = create_store(settings)
    assert isinstance(store, EdgeVectorStore)
    await store.open()
    try:
        assert await store.count_items() == 2000
        assert await store.unindexed_items() == 0
        assert store.item_space == ""  # the worker's first items name it
        found = await store.get_items(["synthetic-0", "synthetic-1999"])
        assert set(found) == {"synthetic-0", "synthetic-1999"}
    finally:
        await store.close()
