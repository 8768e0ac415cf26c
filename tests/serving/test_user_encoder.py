"""user_encoder on the real tritonserver: the served sequence encoder against PyTorch, with
its content anchor for users whose items it was not trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from models import user_model
from models.reference import load_repo_module
from worker.triton import EMBEDDING_DIM, USER_MODEL, TritonClient

pytestmark = pytest.mark.integration

prep = load_repo_module("user_preprocess")
MODEL = user_model.load()
MAX_LEN = MODEL.config.max_len
REFERENCE = user_model.load_reference_items().float().numpy()
CONFIG = Path(__file__).resolve().parents[2] / "triton_repo" / USER_MODEL / "config.pbtxt"
PARAMETERS = {
    key: value.string_value
    for key, value in text_format.Parse(CONFIG.read_text(), pb.ModelConfig()).parameters.items()
}


def histories(
    rows: int, length: int, seed: int, *, familiar: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users whose items are training items (familiar) or random vectors (unfamiliar)."""
    rng = np.random.default_rng(seed)
    if familiar:
        items = REFERENCE[rng.integers(0, len(REFERENCE), size=(rows, length))]
    else:
        items = rng.standard_normal((rows, length, EMBEDDING_DIM))
    items = items / np.linalg.norm(items, axis=-1, keepdims=True)
    weights = rng.choice([0.3, 1.0, 2.0, 3.0, -0.5, -2.0, -0.6, 0.6], size=(rows, length))
    ages = np.sort(rng.uniform(0, 3e6, size=(rows, length)), axis=1)[:, ::-1]
    return items.astype(np.float32), weights.astype(np.float32), ages.astype(np.float32)


def sequence_vectors(items: np.ndarray, weights: np.ndarray, ages: np.ndarray) -> np.ndarray:
    inputs = prep.sequence_inputs(items, weights, ages, MAX_LEN)
    with torch.no_grad():
        return MODEL(*(torch.from_numpy(a) for a in inputs)).numpy()


async def test_users_of_training_items_get_the_trained_model_alone(
    triton_client: TritonClient,
) -> None:
    items, weights, ages = histories(5, 12, seed=1, familiar=True)
    weights[:, 9:] = 0.0  # padding
    weights[2, 4] = 0.0  # a zero-weight event counts as padding too
    got = await triton_client.encode_users(items, weights, ages)
    assert got.shape == (5, EMBEDDING_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, sequence_vectors(items, weights, ages), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


async def test_users_of_unfamiliar_items_are_anchored_to_their_content(
    triton_client: TritonClient,
) -> None:
    items, weights, ages = histories(4, 8, seed=2, familiar=False)
    got = await triton_client.encode_users(items, weights, ages)
    mean = prep.decayed_mean(items, weights, ages, float(PARAMETERS["half_life_seconds"]))
    full = np.full(4, float(PARAMETERS["content_weight"]), np.float32)
    expected = prep.anchored(sequence_vectors(items, weights, ages), mean, full)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert (np.einsum("bd,bd->b", got, mean) > 0.5).all(), "content dominates"


async def test_a_history_longer_than_the_trained_window_uses_its_latest_items(
    triton_client: TritonClient,
) -> None:
    items, weights, ages = histories(2, MAX_LEN + 20, seed=3, familiar=True)
    long = await triton_client.encode_users(items, weights, ages)
    latest = await triton_client.encode_users(
        items[:, -MAX_LEN:], weights[:, -MAX_LEN:], ages[:, -MAX_LEN:]
    )
    np.testing.assert_allclose(long, sequence_vectors(items, weights, ages), atol=1e-3)
    assert np.einsum("bd,bd->b", long, latest) == pytest.approx([1.0, 1.0], abs=1e-2)


async def test_rows_without_usable_history_are_zero(triton_client: TritonClient) -> None:
    items, weights, ages = histories(2, 3, seed=4, familiar=True)
    weights[0] = 0.0
    users = await triton_client.encode_users(items, weights, ages)
    assert not users[0].any() and np.linalg.norm(users[1]) == pytest.approx(1.0, abs=1e-5)


async def test_batches_beyond_max_batch_size_are_split(triton_client: TritonClient) -> None:
    items, weights, ages = histories(300, 6, seed=5, familiar=True)  # above max_batch_size
    got = await triton_client.encode_users(items, weights, ages)
    np.testing.assert_allclose(got, sequence_vectors(items, weights, ages), atol=1e-3)
