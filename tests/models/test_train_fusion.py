"""The fusion's training pieces on small synthetic data, and the evaluation's metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import train_fusion
from models.content_data import ranking_metrics, split_items
from models.fusion import MODALITY_DIMS, FusionModel
from models.onnx_embedder import Features
from models.train_fusion import Config


def synthetic(items: int = 60, users: int = 40, seed: int = 0) -> tuple[Features, list]:
    """Random features; each user interacts with one of three item clusters."""
    rng = np.random.default_rng(seed)
    text_dim, image_dim, audio_dim = MODALITY_DIMS
    features = Features(
        text=rng.standard_normal((items, text_dim)).astype(np.float32),
        image_text=rng.standard_normal((items, text_dim)).astype(np.float32),
        image=rng.standard_normal((items, image_dim)).astype(np.float32),
        audio=np.zeros((items, audio_dim), dtype=np.float32),
        mask=np.tile(np.array([1.0, 1.0, 0.0], dtype=np.float32), (items, 1)),
    )
    user_items = [
        rng.choice(np.arange(user % 3, items, 3), size=8, replace=False) for user in range(users)
    ]
    return features, user_items


def test_dropout_masks_keep_text_or_image_and_never_audio() -> None:
    config = Config(text_only=0.25, image_only=0.15)
    masks = train_fusion.dropout_masks(20_000, config, np.random.default_rng(0))
    assert set(map(tuple, masks.tolist())) == {(1, 0, 0), (0, 1, 0), (1, 1, 0)}
    assert abs((masks[:, 1] == 0).mean() - 0.25) < 0.02
    assert abs((masks[:, 0] == 0).mean() - 0.15) < 0.02


def test_item_factors_are_unit_rows_for_training_items_only() -> None:
    _, user_items = synthetic()
    train = ~split_items(60, 0.2, seed=0)
    factors = train_fusion.item_factors(user_items, train, rank=8)
    assert factors.shape == (60, 8) and factors.dtype == np.float32
    seen = np.zeros(60, dtype=bool)
    seen[np.concatenate(user_items)] = True
    np.testing.assert_allclose(np.linalg.norm(factors[train & seen], axis=1), 1.0, atol=1e-5)
    assert not factors[~train].any()


def test_training_is_deterministic_and_leaves_frozen_modalities_alone() -> None:
    features, user_items = synthetic()
    train = ~split_items(60, 0.2, seed=0)
    config = Config(steps=5, interactions_per_step=64, factors=8)
    first, loss = train_fusion.train(features, user_items, train, config)
    second, _ = train_fusion.train(features, user_items, train, config)
    assert np.isfinite(loss) and not first.training
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    initial = FusionModel(seed=config.seed)
    for index in train_fusion.FROZEN_MODALITIES:
        assert torch.equal(first.projections[index].weight, initial.projections[index].weight)
    assert not torch.equal(first.projections[0].weight, initial.projections[0].weight)


def test_ranking_metrics_on_a_hand_made_case() -> None:
    # Items 0-1 are history, 2-5 candidates; a user who saw item 0 liked 2 and 3.
    vectors = np.array([[1, 0], [0, 1], [1, 0.1], [0.9, 0.2], [0, 1], [-1, 0]], dtype=np.float32)
    history = np.array([True, True, False, False, False, False])
    user_items = [np.array([0, 2, 3]), np.array([1, 4]), np.array([5])]
    metrics = ranking_metrics(vectors, user_items, history, ~history, k=1)
    # User 0: top-1 is item 2 (relevant): recall 1/2, precision 1, F1 2/3, ndcg 1; both
    # relevant items (cosines ~1) beat both negatives (items 4 and 5: cosines 0, -1): AUC 1.
    # User 1: top-1 is item 4: recall, precision, F1, ndcg 1; item 4 beats 2, 3, 5: AUC 1.
    # User 2 has no history and is skipped.
    assert metrics.n_users == 2 and metrics.n_items == 4
    assert metrics.recall == pytest.approx(0.75)
    assert metrics.precision == pytest.approx(1.0)
    assert metrics.f1 == pytest.approx((2 / 3 + 1) / 2)
    assert metrics.ndcg == pytest.approx(1.0)
    assert metrics.auc == pytest.approx(1.0)
    assert metrics.as_json(k=1) == {
        "recall@1": 0.75,
        "precision@1": 1.0,
        "f1@1": 0.8333,
        "ndcg@1": 1.0,
        "auc": 1.0,
        "n_users": 2,
        "n_items": 4,
    }


def test_content_auc_counts_relevant_items_ranked_below_negatives_and_ties_half() -> None:
    # Items 0-1 are history; candidates 2 = [1, 0], 3 = [-1, 0], 4 and 5 = [0, 1].
    vectors = np.array([[1, 0], [0, 1], [1, 0], [-1, 0], [0, 1], [0, 1]], dtype=np.float32)
    history = np.array([True, True, False, False, False, False])
    # User 0 (profile [1, 0]) liked item 3, the candidate furthest from it: below negatives
    # 2, 4 and 5, AUC 0, and top-1 (item 2) misses. User 1 (profile [0, 1]) liked item 4:
    # above 2 and 3 (cosine 0 against 1), tied with its twin 5: AUC (1 + 1 + 0.5) / 3.
    user_items = [np.array([0, 3]), np.array([1, 4])]
    metrics = ranking_metrics(vectors, user_items, history, ~history, k=1)
    assert metrics.auc == pytest.approx((0 + 2.5 / 3) / 2)
    assert metrics.recall == pytest.approx(0.5)  # user 1's top-1 is item 4 (ties: by index)
    assert metrics.precision == pytest.approx(0.5)
    assert metrics.f1 == pytest.approx(0.5)


def test_split_items_is_seeded() -> None:
    first, again, other = (
        split_items(100, 0.2, 0),
        split_items(100, 0.2, 0),
        split_items(100, 0.2, 1),
    )
    assert first.sum() == 20 and np.array_equal(first, again) and not np.array_equal(first, other)
