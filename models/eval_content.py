"""Cold-start evaluation of item content vectors on MovieLens-100K.

    python -m models.eval_content [--out results]

The fifth of the movies held out of training (models/content_data.py) are cold-start items.
For every user, the mean of the vectors of the other movies they rated is their profile; the
cold movies are ranked by cosine to it and the ones the user rated are relevant. Reported:
Recall@10, Precision@10, F1@10, NDCG@10 and a sampled AUC (the user's relevant cold movies
against 100 cold movies they never rated, drawn per user with a fixed seed) for

  random            random unit vectors (a random ranking)
  text_only         the MiniLM vector of the served text
  concat            raw features concatenated: text, image-as-text and EfficientNet image
                    vectors, each L2-normalised (the baseline)
  fusion_untrained  FusionModel's seeded initialisation (what was served before training)
  fusion            the served, trained fusion (the ONNX file Triton loads)

Features come from the served ONNX encoders run in-process (models/onnx_embedder.py), so the
numbers measure what Triton serves. Writes <out>/content_eval.json and content_eval.png.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

# The object-oriented API draws straight to a file: no pyplot, no display backend.
from matplotlib.figure import Figure

from models.content_data import (
    COLD_FRACTION,
    SPLIT_SEED,
    TOP_K,
    Metrics,
    cold_items,
    featurise,
    load_content,
    ranking_metrics,
)
from models.fusion import FusionModel
from models.onnx_embedder import Features, OnnxItemEmbedder, latest_version_dir
from models.reference import REPO_DIR
from worker.evaluate.metrics import AUC_NEGATIVES

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
LABELS = {
    "random": "random",
    "text_only": "text only (MiniLM)",
    "concat": "concat raw features",
    "fusion_untrained": "fusion, untrained",
    "fusion": "fusion, trained",
}


def concatenated(features: Features) -> np.ndarray:
    blocks = (features.text, features.image_text, features.image, features.audio)
    return np.hstack(
        [
            block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
            for block in blocks
        ]
    )


@torch.inference_mode()
def untrained_fusion(features: Features) -> np.ndarray:
    model = FusionModel().eval()
    return model(*(torch.from_numpy(array) for array in features.arrays())).numpy()


def method_vectors(features: Features, embedder: OnnxItemEmbedder) -> dict[str, np.ndarray]:
    random_vectors = np.random.default_rng(SPLIT_SEED).standard_normal((len(features.text), 256))
    return {
        "random": random_vectors.astype(np.float32),
        "text_only": features.text,
        "concat": concatenated(features),
        "fusion_untrained": untrained_fusion(features),
        "fusion": embedder.fuse(features),
    }


def plot(results: dict[str, Metrics], path: Path, title: str) -> None:
    names = list(results)
    positions = np.arange(len(names))
    figure = Figure(figsize=(11, 4.5), dpi=120)
    axes = figure.subplots()
    series = (
        (f"Recall@{TOP_K}", [results[name].recall for name in names]),
        (f"Precision@{TOP_K}", [results[name].precision for name in names]),
        (f"F1@{TOP_K}", [results[name].f1 for name in names]),
        (f"NDCG@{TOP_K}", [results[name].ndcg for name in names]),
        ("AUC (sampled)", [results[name].auc for name in names]),
    )
    width = 0.8 / len(series)
    for n, (label, values) in enumerate(series):
        offset = (n - (len(series) - 1) / 2) * width
        bars = axes.bar(positions + offset, values, width, label=label)
        axes.bar_label(bars, fmt="%.2f", fontsize=6)
    axes.set_xticks(positions, [LABELS[name] for name in names], fontsize=8)
    axes.set_ylabel("mean over users")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.eval_content", description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    content = load_content()
    embedder = OnnxItemEmbedder()
    features = featurise(content, embedder)
    cold = cold_items(len(content.item_ids))
    results = {
        name: ranking_metrics(vectors, content.user_items, ~cold, cold)
        for name, vectors in method_vectors(features, embedder).items()
    }
    fusion_version = int(latest_version_dir(REPO_DIR, "fusion").name)
    report = {
        "dataset": "MovieLens-100K (implicit: every rating is an interaction)",
        "protocol": (
            f"{COLD_FRACTION:.0%} of the movies (seed {SPLIT_SEED}) held out of training; per "
            "user, cold movies ranked by cosine to the mean vector of the user's other movies; "
            "relevant = cold movies the user rated; AUC: relevant cold movies against "
            f"{AUC_NEGATIVES} cold movies the user never rated, drawn per user (seed "
            f"{SPLIT_SEED}), ties half"
        ),
        "items": "served text (title (year), genres as tags) + synthetic poster; no audio",
        "fusion_version": fusion_version,
        "methods": {name: metrics.as_json() for name, metrics in results.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "content_eval.json").write_text(json.dumps(report, indent=2) + "\n")
    title = (
        f"MovieLens-100K cold-start: {results['fusion'].n_items} held-out movies, "
        f"{results['fusion'].n_users} users (fusion v{fusion_version})"
    )
    plot(results, args.out / "content_eval.png", title)
    columns = ("recall", "precision", "f1", "ndcg", "auc")
    print(f"{'method':<18}" + "".join(f"{c:>11}" for c in columns) + f"{'users':>7}{'items':>7}")
    for name, metrics in results.items():
        cells = "".join(f"{getattr(metrics, c):>11.4f}" for c in columns)
        print(f"{name:<18}{cells}{metrics.n_users:>7}{metrics.n_items:>7}")
    print(f"wrote {args.out / 'content_eval.json'} and {args.out / 'content_eval.png'}")


if __name__ == "__main__":
    main()
