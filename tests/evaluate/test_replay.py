"""The replay on a slice of MovieLens, on the session tritonserver: every A/B variant is
scored in the same run, each over its own share of the users."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.evaluate.catalogue import embed_movies
from worker.evaluate.replay import WORKER, replay
from worker.movielens import load_movies, load_ratings
from worker.settings import load_settings
from worker.store import EdgeVectorStore
from worker.triton import TritonClient

pytestmark = pytest.mark.integration


async def test_the_replay_scores_every_variant_over_its_share_of_the_users(
    triton_client: TritonClient, tmp_path: Path
) -> None:
    movies = load_movies()[:150]
    kept = {m.item_id for m in movies}
    ratings = [r for r in load_ratings() if r.item_id in kept][:1500]
    settings = load_settings(
        variants=[
            {"name": "control", "weight": 1},
            {"name": "diverse", "weight": 1, "ranking": {"mmr_lambda": 0.5}},
        ]
    )
    store = EdgeVectorStore(tmp_path / "edge", triton_client.dim)
    await store.open()
    try:
        metrics = await replay(
            triton=triton_client,
            stores=[store],
            settings=settings,
            catalogue=await embed_movies(triton_client, movies),
            movies={m.item_id: m for m in movies},
            ratings=ratings,
            log=lambda line: None,
        )
    finally:
        await store.close()
    control, diverse = metrics[f"{WORKER}/control"], metrics[f"{WORKER}/diverse"]
    assert control.n_events > 0 and diverse.n_events > 0
    assert control.n_events + diverse.n_events == metrics[WORKER].n_events
    assert control.hits + diverse.hits == metrics[WORKER].hits
    assert control.auc_events + diverse.auc_events == metrics[WORKER].auc_events > 0
