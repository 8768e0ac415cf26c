"""Train the sequence user encoder on MovieLens-100K (chronological split), CPU, minutes.

    python -m models.train_user_encoder [--epochs 40] [--seed 0]     (make train-user)

1. Starts a local tritonserver on `triton_repo/` and embeds the 1,682 movies with the served
   item_embedder: the encoder learns in the exact space Qdrant searches. Retrain whenever
   the item embedder changes (the model card records the item-space fingerprint, and the
   replay evaluation checks it).
2. Takes the first 80% of ratings in timestamp order (the replay evaluation scores only the
   rest). Each rating becomes the signed weight the worker gives it (`event_weight`).
3. SASRec-style training: each user's history is cut into windows of `max_len` (at a random
   offset every epoch); every position predicts the next item with a full softmax over
   the training catalogue, the user's already-seen items masked out (the worker never
   recommends them either).
4. Writes models/weights/user_encoder.pt (~1.3 MB: the weights and the training items'
   vectors, against which the served model judges how familiar a user's items are) and
   user_encoder.json (the model card).
   `python -m models.export_user` then builds triton_repo/user_encoder/1/model.onnx.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import user_model
from models.reference import load_repo_module
from models.user_model import SequenceUserEncoder, UserModelConfig
from worker.evaluate.catalogue import (
    EmbeddedCatalogue,
    embed_movies,
    rating_weight,
    train_cutoff,
)
from worker.movielens import Rating, load_movies, load_ratings
from worker.settings import DEFAULT_EVENT_WEIGHTS
from worker.stack.tritonserver import TritonServer
from worker.triton import TritonClient

REPO_DIR = Path(__file__).resolve().parents[1] / "triton_repo"
BATCH = 64
LEARNING_RATE = 3e-3
# Softmax temperature at the start (learned afterwards, capped).
INITIAL_LOGIT_SCALE = 30.0
MAX_LOGIT_SCALE = 100.0


def user_sequences(ratings: Sequence[Rating], index: dict[str, int]) -> list[np.ndarray]:
    """Per user, rows of (item index, weight, ts) in time order; users with >= 2 ratings."""
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for rating in ratings:
        rows.setdefault(rating.user_id, []).append(
            (index[rating.item_id], rating_weight(rating, DEFAULT_EVENT_WEIGHTS), rating.ts)
        )
    return [np.array(r, dtype=np.float64) for r in rows.values() if len(r) >= 2]


def windows(
    sequences: list[np.ndarray], max_len: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    """(sequence number, start, end): inputs are positions [start, end), each predicting the
    item one later. Cut points move by a random offset every epoch (augmentation)."""
    out = []
    for number, seq in enumerate(sequences):
        steps = len(seq) - 1  # positions that have a next item
        offset = int(rng.integers(0, max_len)) if steps > max_len else 0
        cuts = [0, *range(offset or max_len, steps, max_len), steps]
        out.extend((number, a, b) for a, b in itertools.pairwise(cuts) if b > a)
    return out


def batch_tensors(
    batch: list[tuple[int, int, int]],
    sequences: list[np.ndarray],
    vectors: torch.Tensor,
    max_len: int,
    gaps_from_ages: Callable[[np.ndarray], np.ndarray],
) -> tuple[torch.Tensor, ...]:
    size, n_items = len(batch), vectors.shape[0]
    items = torch.zeros(size, max_len, dtype=torch.long)
    weights = torch.zeros(size, max_len)
    gaps = torch.zeros(size, max_len)
    lengths = torch.zeros(size, dtype=torch.long)
    targets = torch.full((size, max_len), -1, dtype=torch.long)
    seen = torch.zeros(size, max_len, n_items, dtype=torch.bool)
    for row, (number, start, end) in enumerate(batch):
        seq = sequences[number]
        n = end - start
        ids = torch.from_numpy(seq[start:end, 0].astype(np.int64))
        items[row, :n] = ids
        weights[row, :n] = torch.from_numpy(seq[start:end, 1])
        # As the worker sends them: ages from the newest interaction in the window.
        gaps[row, :n] = torch.from_numpy(gaps_from_ages(seq[end - 1, 2] - seq[start:end, 2]))
        lengths[row] = n
        targets[row, :n] = torch.from_numpy(seq[start + 1 : end + 1, 0].astype(np.int64))
        # Seen before position t: everything earlier in the history, and the window up to t.
        before = torch.from_numpy(seq[:start, 0].astype(np.int64))
        seen[row, :, before] = True
        step = torch.zeros(n, n_items, dtype=torch.bool)
        step[torch.arange(n), ids] = True
        seen[row, :n] |= step.cumsum(0) > 0
    return vectors[items], weights, gaps, lengths, targets, seen


def _step(
    model: SequenceUserEncoder,
    logit_scale: torch.nn.Parameter,
    optimiser: torch.optim.Optimizer,
    inputs: tuple[torch.Tensor, ...],
    vectors: torch.Tensor,
) -> tuple[float, int]:
    """One optimiser step on a batch: -> (mean loss per target, targets)."""
    item_vectors, weights, gaps, lengths, targets, seen = inputs
    states = model.states(item_vectors, weights, gaps, lengths)
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = (states @ vectors.T * scale).masked_fill(seen, -1e4)
    valid = targets >= 0
    loss = F.cross_entropy(logits[valid], targets[valid])
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return float(loss.detach()), int(valid.sum())


def train(
    catalogue: EmbeddedCatalogue,
    ratings: Sequence[Rating],
    *,
    epochs: int,
    seed: int,
    config: UserModelConfig,
    log: Callable[[str], None] = print,
) -> tuple[SequenceUserEncoder, dict[str, object], torch.Tensor]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cut = train_cutoff(ratings)
    train_ratings = ratings[:cut]
    # The softmax ranges over the catalogue known during training only.
    row_of = {item_id: row for row, item_id in enumerate(catalogue.item_ids)}
    known = sorted({r.item_id for r in train_ratings}, key=row_of.__getitem__)
    index = {item_id: n for n, item_id in enumerate(known)}
    rows = [row_of[item_id] for item_id in known]
    vectors = F.normalize(torch.from_numpy(catalogue.vectors[rows]), dim=1)
    sequences = user_sequences(train_ratings, index)
    gaps_from_ages = load_repo_module("user_preprocess", REPO_DIR).gaps_from_ages

    model = SequenceUserEncoder(config)
    logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(INITIAL_LOGIT_SCALE))))
    optimiser = torch.optim.AdamW(
        [*model.parameters(), logit_scale], lr=LEARNING_RATE, weight_decay=0.01
    )
    started = time.perf_counter()
    loss_per_target = float("nan")
    for epoch in range(epochs):
        model.train()
        order = windows(sequences, config.max_len, rng)
        rng.shuffle(order)
        total, targets_seen = 0.0, 0
        for first in range(0, len(order), BATCH):
            inputs = batch_tensors(
                order[first : first + BATCH], sequences, vectors, config.max_len, gaps_from_ages
            )
            loss, count = _step(model, logit_scale, optimiser, inputs, vectors)
            total += loss * count
            targets_seen += count
        loss_per_target = total / targets_seen
        log(
            f"epoch {epoch + 1}/{epochs}: loss {loss_per_target:.3f}, logit scale "
            f"{float(logit_scale.detach().exp()):.1f} ({time.perf_counter() - started:.0f} s)"
        )
    card: dict[str, object] = {
        "config": asdict(config),
        "epochs": epochs,
        "seed": seed,
        "train_ratings": cut,
        "train_until_ts": ratings[cut - 1].ts,
        "train_catalogue": len(known),
        "final_loss": round(loss_per_target, 4),
        "item_model_version": catalogue.model_version,
        "item_space_fingerprint": catalogue.fingerprint(),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return model.eval(), card, vectors


async def _embed(url: str) -> EmbeddedCatalogue:
    client = TritonClient(url)
    try:
        await client.wait_ready(timeout_s=120.0)
        return await embed_movies(client, load_movies())
    finally:
        await client.close()


def served_catalogue(work_dir: Path) -> EmbeddedCatalogue:
    """The movies embedded by a tritonserver started on the project's model repository."""
    server = TritonServer(REPO_DIR, work_dir)
    server.start()
    try:
        return asyncio.run(_embed(server.http_url))
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train_user_encoder")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=user_model.WEIGHTS_FILE)
    parser.add_argument("--stack-dir", type=Path, default=Path(".stack") / "train-user")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    catalogue = served_catalogue(args.stack_dir)
    print(f"embedded {len(catalogue.item_ids)} movies with {catalogue.model_version}")
    model, card, reference = train(
        catalogue, load_ratings(), epochs=args.epochs, seed=args.seed, config=UserModelConfig()
    )
    user_model.save(model, card, reference, args.out)
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} KB) and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
