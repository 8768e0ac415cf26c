"""The sequence user encoder: its inputs, the module, training and the ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models import user_model
from models.export_user import INPUT_NAMES, ONNX_FILE, export_user_encoder
from models.reference import load_repo_module
from models.train_user_encoder import train
from models.user_model import SequenceUserEncoder, UserModelConfig
from worker.evaluate.catalogue import EmbeddedCatalogue
from worker.movielens import load_movies, load_ratings

prep = load_repo_module("user_preprocess")
SMALL = UserModelConfig(item_dim=8, d=16, heads=2, layers=1, max_len=6, dropout=0.0)


def unit_rows(*shape: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.from_numpy(a) for a in arrays]


def test_sequence_inputs_keep_the_latest_real_interactions_left_aligned() -> None:
    items = unit_rows(1, 5, 8)
    weights = np.array([[1.0, 0.0, -2.0, 0.5, 1.0]], np.float32)  # column 1 is padding
    ages = np.array([[400.0, 0.0, 300.0, 100.0, 0.0]], np.float32)
    vectors, kept, gaps, lengths = prep.sequence_inputs(items, weights, ages, max_len=3)
    assert lengths.tolist() == [3]
    np.testing.assert_array_equal(vectors[0], items[0, [2, 3, 4]])
    np.testing.assert_array_equal(kept[0], [-2.0, 0.5, 1.0])
    np.testing.assert_array_equal(gaps[0], [0.0, 200.0, 100.0])  # first gap: nothing before


def test_decayed_mean_pushes_away_from_dislikes_and_favours_recent_items() -> None:
    liked, disliked = unit_rows(2, 8, seed=1)
    history = np.stack([liked, disliked])[None]
    ages = np.zeros((1, 2), np.float32)
    with_dislike = prep.decayed_mean(history, np.array([[1.0, -1.0]], np.float32), ages, 10.0)
    assert with_dislike[0] @ disliked < 0 < with_dislike[0] @ liked
    old_new = prep.decayed_mean(history, np.ones((1, 2), np.float32), np.array([[20.0, 0]]), 10.0)
    assert old_new[0] @ disliked > old_new[0] @ liked
    empty = prep.decayed_mean(np.zeros((1, 2, 8), np.float32), np.zeros((1, 2)), ages, 10.0)
    assert not empty.any()


def test_output_is_a_unit_vector_or_zero_for_an_empty_history() -> None:
    model = SequenceUserEncoder(SMALL).eval()
    vectors = torch.from_numpy(unit_rows(3, 6, 8))
    out = model(vectors, torch.ones(3, 6), torch.zeros(3, 6), torch.tensor([6, 2, 0]))
    norms = out.norm(dim=1)
    assert norms[:2].tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert norms[2] == 0


def test_the_output_is_the_state_at_each_rows_last_position() -> None:
    config = UserModelConfig(item_dim=8, d=16, heads=2, layers=2, max_len=6, dropout=0.0)
    model = SequenceUserEncoder(config).eval()
    vectors = torch.from_numpy(unit_rows(4, 6, 8, seed=3))
    weights, gaps = torch.rand(4, 6) * 2 - 1, torch.rand(4, 6) * 1e4
    lengths = torch.tensor([6, 3, 1, 0])
    with torch.no_grad():
        states = model.states(vectors, weights, gaps, lengths)
        out = model(vectors, weights, gaps, lengths)
    for row, n in enumerate(lengths.tolist()):
        expected = states[row, n - 1] if n else torch.zeros(8)
        assert torch.allclose(out[row], expected, atol=1e-6)


def test_vector_keys_tell_item_vectors_apart_and_repeat_for_the_same_one() -> None:
    vectors = unit_rows(50, 256, seed=4)
    keys = prep.vector_keys(np.concatenate([vectors, vectors[:5].copy()]))
    assert len(set(keys[:50])) == 50 and keys[50:] == keys[:5]


def test_a_position_never_sees_later_items() -> None:
    model = SequenceUserEncoder(SMALL).eval()
    vectors = torch.from_numpy(unit_rows(1, 6, 8))
    changed = vectors.clone()
    changed[0, 4:] = torch.from_numpy(unit_rows(2, 8, seed=5))
    args = (torch.ones(1, 6), torch.zeros(1, 6), torch.tensor([6]))
    with torch.no_grad():
        before, after = model.states(vectors, *args), model.states(changed, *args)
    torch.testing.assert_close(before[0, :4], after[0, :4])
    assert not torch.allclose(before[0, 4:], after[0, 4:])


def test_event_strength_beyond_the_trained_range_clamps_to_the_strongest_anchor() -> None:
    model = SequenceUserEncoder(SMALL).eval()
    vectors = torch.from_numpy(unit_rows(1, 2, 8))
    gaps, lengths = torch.zeros(1, 2), torch.tensor([2])
    with torch.no_grad():
        purchase = model(vectors, torch.tensor([[3.0, 3.0]]), gaps, lengths)
        five_stars = model(vectors, torch.tensor([[1.0, 1.0]]), gaps, lengths)
    torch.testing.assert_close(purchase, five_stars)


def test_training_runs_on_a_slice_of_movielens(tmp_path: Path) -> None:
    movies = load_movies()
    catalogue = EmbeddedCatalogue(
        [m.item_id for m in movies], unit_rows(len(movies), 8, seed=2), "test-space"
    )
    model, card, reference = train(
        catalogue, load_ratings()[:1500], epochs=1, seed=0, config=SMALL, log=lambda _: None
    )
    assert reference.shape == (card["train_catalogue"], 8)
    assert np.isfinite(card["final_loss"]) and card["train_ratings"] == 1200  # type: ignore[arg-type]
    assert card["item_space_fingerprint"] == catalogue.fingerprint()
    user_model.save(model, card, reference, tmp_path / "encoder.pt")
    reloaded = user_model.load(tmp_path / "encoder.pt")
    assert reloaded.config == SMALL
    assert user_model.load_reference_items(tmp_path / "encoder.pt").dtype == torch.float16
    assert json.loads((tmp_path / "encoder.json").read_text())["seed"] == 0


def test_committed_weights_are_small_and_described_by_their_card() -> None:
    assert user_model.WEIGHTS_FILE.stat().st_size < 5_000_000
    card = json.loads(user_model.CARD_FILE.read_text())
    assert user_model.load().config == UserModelConfig(**card["config"])


def test_onnx_export_matches_pytorch_and_is_skipped_when_up_to_date(tmp_path: Path) -> None:
    (tmp_path / "user_encoder" / "1").mkdir(parents=True)
    assert export_user_encoder(tmp_path, log=lambda _: None)
    assert not export_user_encoder(tmp_path, log=lambda _: None)
    model = user_model.load()
    items = unit_rows(4, 70, model.config.item_dim, seed=3)
    weights = (
        np.random.default_rng(3).choice([0.0, -0.6, 0.2, 1.0, 2.0], (4, 70)).astype(np.float32)
    )
    ages = np.sort(np.random.default_rng(4).uniform(0, 1e6, (4, 70)), axis=1)[:, ::-1]
    inputs = prep.sequence_inputs(items, weights, ages.astype(np.float32), model.config.max_len)
    session = ort.InferenceSession(str(tmp_path / "user_encoder" / "1" / ONNX_FILE))
    [got] = session.run(None, dict(zip(INPUT_NAMES, inputs, strict=True)))
    with torch.no_grad():
        expected = model(*tensors(*inputs)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
