"""`python -m worker.evaluate`: the prequential MovieLens-100K replay (`make eval-replay`).

Starts a local tritonserver on `triton_repo/`, embeds the catalogue with the served
item_embedder, replays every rating through the worker's events path on an embedded Qdrant
Edge in a scratch directory, and writes the metrics of the worker and the baselines as JSON
and PNG. Ranking settings come from the environment like the worker's own (e.g.
MMR_LAMBDA=1 python -m worker.evaluate); the JSON records the values used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from models import user_model
from worker.evaluate.catalogue import TRAIN_FRACTION, EmbeddedCatalogue, embed_movies
from worker.evaluate.metrics import AUC_NEGATIVES
from worker.evaluate.plot import plot
from worker.evaluate.replay import replay
from worker.movielens import load_movies, load_ratings
from worker.settings import Settings, load_settings
from worker.stack.tritonserver import TritonServer
from worker.store import EdgeVectorStore
from worker.triton import TritonClient

RANKING_SETTINGS = (
    "recommendations_k",
    "history_window",
    "candidate_pool",
    "trending_half_life_s",
    "trending_size",
    "popularity_weight",
    "popularity_history",
    "freshness_boost",
    "freshness_half_life_s",
    "mmr_lambda",
    "negative_feedback_weight",
    "covisitation_weight",
    "covisitation_history",
    "covisitation_neighbours",
    "covisitation_candidates",
    "fanout_users_per_item",
)


def served_user_encoder(repo: Path) -> str:
    config = text_format.Parse(
        (repo / "user_encoder" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    return config.parameters["encoder"].string_value


def encoder_card(catalogue: EmbeddedCatalogue) -> dict[str, Any]:
    """The trained encoder's model card, and whether it was trained in this item space."""
    if not user_model.CARD_FILE.is_file():
        return {"trained": False}
    card = json.loads(user_model.CARD_FILE.read_text())
    return {
        "trained": True,
        "item_space_matches": card.get("item_space_fingerprint") == catalogue.fingerprint(),
        **{k: card.get(k) for k in ("epochs", "train_ratings", "item_model_version", "seed")},
    }


async def _run(
    settings: Settings,
    triton_url: str,
    scratch: Path,
    batch: int,
    limit: int | None,
    workers: int = 1,
    isolated_signals: bool = False,
) -> dict[str, Any]:
    triton = TritonClient(triton_url)
    stores = [
        EdgeVectorStore(scratch / f"qdrant-edge-{w}", settings.embedding_dim)
        for w in range(workers)
    ]
    await triton.wait_ready(timeout_s=120.0)
    for store in stores:
        await store.open()
    try:
        movies = load_movies()
        catalogue = await embed_movies(triton, movies)
        ratings = load_ratings()[:limit]
        metrics = await replay(
            triton=triton,
            stores=stores,
            isolated_signals=isolated_signals,
            settings=settings,
            catalogue=catalogue,
            movies={m.item_id: m for m in movies},
            ratings=ratings,
            batch_size=batch,
        )
    finally:
        for store in stores:
            await store.close()
        await triton.close()
    return {
        "protocol": _protocol(settings, len(ratings), batch, workers, isolated_signals),
        "item_model_version": catalogue.model_version,
        "item_space_fingerprint": catalogue.fingerprint(),
        "user_encoder": {
            "served": served_user_encoder(settings.triton_repo),
            **encoder_card(catalogue),
        },
        "settings": {name: getattr(settings, name) for name in RANKING_SETTINGS},
        "methods": {name: m.summary(len(catalogue.item_ids)) for name, m in metrics.items()},
        "curves": {name: m.curve for name, m in metrics.items()},
    }


def _protocol(
    settings: Settings, ratings: int, batch: int, workers: int, isolated_signals: bool
) -> dict[str, Any]:
    """How the replay was run and scored (recorded in its JSON)."""
    return {
        "dataset": "MovieLens-100K",
        "ratings": ratings,
        "warm_up_fraction": TRAIN_FRACTION,
        "k": settings.recommendations_k,
        "events_batch_size": batch,
        "workers": workers,
        "isolated_signals": isolated_signals,
        "partitions": settings.topic_partitions,
        "scored": "held-out ratings except each movie's first",
        "mrr": "reciprocal rank within the top k (0 beyond)",
        "precision": "hits / (k * events): one relevant item per event",
        "f1": "2 * precision * recall / (precision + recall)",
        "auc": (
            f"per event, the rated movie against {AUC_NEGATIVES} sampled catalogue movies "
            "the user never rates (seeded per event), by each method's scores at the "
            "start of the event's micro-batch; ties count half"
        ),
    }


def print_table(methods: dict[str, dict[str, Any]], k: int) -> None:
    columns = [f"recall@{k}", f"precision@{k}", f"f1@{k}", f"ndcg@{k}", "mrr", "auc", "coverage"]
    print(f"{'method':<20}" + "".join(f"{c:>14}" for c in columns) + "  new-item hits  events")
    for name, m in methods.items():
        cells = "".join("{:>14}".format("-" if m[c] is None else f"{m[c]:.4f}") for c in columns)
        print(f"{name:<20}{cells}  {m['new_item_hits']:>13}  {m['n_events']:>6}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.evaluate", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/replay_eval.json"))
    parser.add_argument("--png", type=Path, default=Path("results/replay_eval.png"))
    parser.add_argument("--batch-size", type=int, default=64, help="events per micro-batch")
    parser.add_argument("--ratings", type=int, help="replay only the first N ratings (smoke runs)")
    parser.add_argument(
        "--workers", type=int, default=1, help="split the events over N workers (one group)"
    )
    parser.add_argument(
        "--isolated-signals",
        action="store_true",
        help="with --workers: each worker counts only its own events (no signals changelog)",
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="streamrec-replay-") as scratch:
        server = TritonServer(settings.triton_repo, Path(scratch) / "triton")
        server.start()
        try:
            report = asyncio.run(
                _run(
                    settings,
                    server.http_url,
                    Path(scratch),
                    args.batch_size,
                    args.ratings,
                    args.workers,
                    args.isolated_signals,
                )
            )
        finally:
            server.stop()
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.png)
    print_table(report["methods"], settings.recommendations_k)
    print(f"wrote {args.out} and {args.png} in {report['runtime_s']:.0f} s")


if __name__ == "__main__":
    main()
