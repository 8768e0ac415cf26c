"""Train the fusion on MovieLens-100K behaviour; write versioned weights for Triton.

    python -m models.train_fusion [--version N] [--validate]

Content vectors are aligned with collaborative signal: each training movie's fused vector
must pick out that movie's matrix-factorisation item factor (a truncated SVD of the
user x movie interaction matrix) among the other movies of the batch (InfoNCE, both
directions, through a learned linear map of the factors). Movies that the same users watch
get close vectors, so a user's history points at unseen movies like it: what cold-start
retrieval needs, from content alone.

What is trained on what: the text LayerNorm + projection (which the image's text-space token
shares) on the served text of each movie; the gate and per-token priors on text plus
synthetic posters (see models/content_data.py) with modality dropout (a movie is sometimes
text-only, sometimes image-only), so the gate learns what an uninformative image is worth.
The image LayerNorm + projection keep their seeded initialisation: the posters carry no
behavioural signal, and on the validation split training them only memorised the training
movies (validation NDCG fell below that of raw text). MovieLens has no audio: the audio
LayerNorm + projection keep their seeded initialisation too. The cold-start fifth of the
movies is never seen. Seeds are fixed: a re-run reproduces the weights (bit for bit on the
same CPU type and thread count).

`--validate` holds out an eighth of the training movies as a second cold set and prints its
metrics while training (how the settings below were chosen), then writes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import fusion
from models.content_data import (
    Content,
    cold_items,
    featurise,
    load_content,
    ranking_metrics,
    split_items,
)
from models.onnx_embedder import Features, OnnxItemEmbedder

DEFAULT_VERSION = 2


@dataclass(frozen=True)
class Config:
    seed: int = 0
    # Chosen on the validation split: past a few hundred steps the fit turns into
    # memorising the training movies and cold-start quality falls.
    steps: int = 200
    interactions_per_step: int = 1024  # sampled interactions; their distinct movies form the batch
    factors: int = 64  # SVD rank of the collaborative item factors
    temperature: float = 0.2
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    text_only: float = 0.25  # modality dropout: share of rows that lose their image
    image_only: float = 0.15  # ... and that lose their text
    threads: int = 2


def item_factors(user_items: Sequence[np.ndarray], train: np.ndarray, rank: int) -> np.ndarray:
    """[n_items, rank] unit item factors from the training interactions (zero rows for items
    without any).

    Columns are scaled by 1/sqrt(popularity) first, so the leading factors describe taste
    rather than only how popular a movie is."""
    matrix = np.zeros((len(user_items), len(train)), dtype=np.float64)
    for user, items in enumerate(user_items):
        matrix[user, items[train[items]]] = 1.0
    popularity = matrix.sum(axis=0)
    scaled = matrix / np.sqrt(np.maximum(popularity, 1.0))
    _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
    factors = vt[:rank].T * np.sqrt(singular[:rank])
    factors[popularity == 0] = 0.0  # rounding noise, not factors: no training interaction
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return np.where(norms > 0, factors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


# Indices into FusionModel.norms / .projections (text, image, audio) left as initialised:
# no behavioural signal reaches them from MovieLens (see the module docstring).
FROZEN_MODALITIES = (1, 2)


def freeze_untrainable(model: fusion.FusionModel) -> None:
    for index in FROZEN_MODALITIES:
        for module in (model.norms[index], model.projections[index]):
            module.requires_grad_(False)


def dropout_masks(rows: int, config: Config, generator: np.random.Generator) -> np.ndarray:
    """[rows, 3] presence masks for text+image rows: some keep only one of the two."""
    draw = generator.random(rows)
    text_only = draw < config.text_only
    image_only = ~text_only & (draw < config.text_only + config.image_only)
    mask = np.zeros((rows, 3), dtype=np.float32)
    mask[:, 0] = ~image_only
    mask[:, 1] = ~text_only
    return mask


def train(
    features: Features,
    user_items: Sequence[np.ndarray],
    train_items: np.ndarray,
    config: Config,
    on_checkpoint: Callable[[int, float, fusion.FusionModel], None] | None = None,
) -> tuple[fusion.FusionModel, float]:
    """-> (the trained model in eval mode, the last step's loss)."""
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    model = fusion.FusionModel(seed=config.seed)
    freeze_untrainable(model)
    targets = torch.from_numpy(item_factors(user_items, train_items, config.factors))
    to_target = nn.Linear(config.factors, fusion.FUSED_DIM, bias=False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [*parameters, *to_target.parameters()],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    # Interactions with training movies: sampling them weighs movies by popularity.
    interactions = np.concatenate([items[train_items[items]] for items in user_items])
    inputs = [torch.from_numpy(array) for array in features.arrays()[:4]]
    loss = torch.zeros(())
    for step in range(1, config.steps + 1):
        model.train()
        picked = np.unique(generator.choice(interactions, config.interactions_per_step))
        mask = torch.from_numpy(dropout_masks(len(picked), config, generator))
        rows = torch.from_numpy(picked)
        content = model(*(array[rows] for array in inputs), mask)
        behaviour = F.normalize(to_target(targets[rows]), dim=1)
        loss = info_nce(content, behaviour, config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_checkpoint is not None and step % 50 == 0:
            model.eval()
            on_checkpoint(step, loss.item(), model)
    return model.eval(), loss.item()


def info_nce(content: Tensor, behaviour: Tensor, temperature: float) -> Tensor:
    """Row i of each side is the same movie; every other row is a negative."""
    logits = content @ behaviour.T / temperature
    labels = torch.arange(len(content))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@torch.inference_mode()
def fused(model: fusion.FusionModel, features: Features) -> np.ndarray:
    return model(*(torch.from_numpy(array) for array in features.arrays())).numpy()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train_fusion", description=__doc__)
    parser.add_argument("--version", type=int, default=None, help="default: the newest weights")
    parser.add_argument("--validate", action="store_true", help="tune on a validation split")
    parser.add_argument("--steps", type=int, default=Config.steps)
    args = parser.parse_args(argv)
    versions = fusion.weights_versions()
    version = args.version or (versions[-1] if versions else DEFAULT_VERSION)
    config = Config(steps=args.steps)
    torch.set_num_threads(config.threads)
    started = time.perf_counter()

    content: Content = load_content()
    features = featurise(content, OnnxItemEmbedder(threads=config.threads))
    featurised = time.perf_counter()
    print(f"featurised {len(content.item_ids)} movies in {featurised - started:.0f} s")

    cold = cold_items(len(content.item_ids))
    train_items = ~cold
    if args.validate:
        held = split_items(len(content.item_ids), 1 / 8, config.seed + 1) & train_items
        train_items &= ~held
        text_only = ranking_metrics(features.text, content.user_items, train_items, held)
        print(
            f"validation, raw text: ndcg@10 {text_only.ndcg:.4f} recall@10 {text_only.recall:.4f}"
        )

        def report(step: int, loss: float, model: fusion.FusionModel) -> None:
            metrics = ranking_metrics(fused(model, features), content.user_items, train_items, held)
            print(f"step {step}: loss {loss:.3f}", end=" ")
            print(f"ndcg@10 {metrics.ndcg:.4f} recall@10 {metrics.recall:.4f}")

        train(features, content.user_items, train_items, config, report)
        return

    model, loss = train(features, content.user_items, train_items, config)
    trained = time.perf_counter()
    path = fusion.weights_path(version)
    fusion.save_weights(model, path)
    record = {
        "version": version,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "config": asdict(config),
        "final_loss": round(loss, 4),
        "train_movies": int(train_items.sum()),
        "cold_movies_held_out": int(cold.sum()),
        "trained": (
            "text LayerNorm + projection (shared by the image's text-space token), "
            "gate and per-token priors"
        ),
        "left_at_seeded_init": "image and audio LayerNorm + projection",
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {config.steps} steps in "
        f"{trained - featurised:.0f} s, final loss {loss:.3f}; run `python -m models.export` "
        "to build its ONNX file"
    )


if __name__ == "__main__":
    main()
