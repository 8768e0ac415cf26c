"""FusionModel: unit vectors, masking, determinism, what the untrained model preserves, and
the committed trained weights."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models import fusion
from models.fusion import FUSED_DIM, MODALITY_DIMS, TOKENS, FusionModel
from models.train_fusion import FROZEN_MODALITIES

MASKS = torch.tensor(list(itertools.product([0.0, 1.0], repeat=len(MODALITY_DIMS))))
NON_EMPTY = MASKS[MASKS.sum(dim=1) > 0]
# Input sizes in forward() order: text, image-as-text, image, audio.
INPUT_DIMS = (MODALITY_DIMS[0], MODALITY_DIMS[0], MODALITY_DIMS[1], MODALITY_DIMS[2])
# forward() input -> the mask column that says whether it is present.
INPUT_MODALITY = (0, 1, 1, 2)


def features(rows: int, seed: int = 0, scale: float = 1.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, dim, generator=generator) * scale for dim in INPUT_DIMS]


@pytest.fixture(scope="module")
def trained() -> FusionModel:
    versions = fusion.weights_versions()
    assert versions, "the trained fusion weights are committed under models/weights/"
    return fusion.load_weights(fusion.weights_path(versions[-1]))


@pytest.mark.parametrize("weights", ["untrained", "trained"])
@torch.inference_mode()
def test_every_non_empty_mask_gives_a_finite_unit_vector(
    weights: str, trained: FusionModel
) -> None:
    model = trained if weights == "trained" else FusionModel().eval()
    for scale in (1e-3, 1.0, 1e3):
        out = model(*features(len(NON_EMPTY), scale=scale), NON_EMPTY)
        assert out.shape == (len(NON_EMPTY), FUSED_DIM)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.norm(dim=1), torch.ones(len(NON_EMPTY)))


@torch.inference_mode()
def test_zero_features_of_a_present_modality_still_give_a_unit_vector() -> None:
    model = FusionModel().eval()
    text, image_text, image, audio = features(1)
    out = model(text, image_text, torch.zeros_like(image), audio, torch.ones(1, 3))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(1))


@torch.inference_mode()
def test_empty_mask_gives_zeros() -> None:
    out = FusionModel().eval()(*features(2), torch.zeros(2, 3))
    assert torch.equal(out, torch.zeros(2, FUSED_DIM))


@pytest.mark.parametrize("weights", ["untrained", "trained"])
@torch.inference_mode()
def test_absent_modalities_contribute_nothing(weights: str, trained: FusionModel) -> None:
    model = trained if weights == "trained" else FusionModel().eval()
    inputs = features(len(NON_EMPTY))
    others = features(len(NON_EMPTY), seed=1)
    base = model(*inputs, NON_EMPTY)
    # Replace the features of every absent modality with something else entirely.
    absent = (1.0 - NON_EMPTY).unsqueeze(-1)
    swapped = [
        feature * (1.0 - absent[:, m]) + other * absent[:, m]
        for m, feature, other in zip(INPUT_MODALITY, inputs, others, strict=True)
    ]
    torch.testing.assert_close(model(*swapped, NON_EMPTY), base)


@torch.inference_mode()
def test_single_modality_vector_ignores_the_others_entirely() -> None:
    model = FusionModel().eval()
    inputs = features(1)
    text_only = model(*inputs, torch.tensor([[1.0, 0.0, 0.0]]))
    expected = F.normalize(model.projections[0](model.norms[0](inputs[0])), dim=1)
    torch.testing.assert_close(text_only, expected)


@torch.inference_mode()
def test_an_image_goes_into_the_text_space_through_the_text_projection(
    trained: FusionModel,
) -> None:
    """The image-as-text token is made exactly like a text token: an image whose classes
    name what a text says lands where that text does, trained or not."""
    for model in (FusionModel().eval(), trained):
        text, _, image, audio = features(3)
        tokens = model.tokens(text, text, image, audio)
        torch.testing.assert_close(tokens[:, TOKENS.index("image_text")], tokens[:, 0])


@torch.inference_mode()
def test_untrained_gate_weighs_present_tokens_equally() -> None:
    model = FusionModel().eval()
    inputs = features(1)
    tokens = model.tokens(*inputs)
    expected = F.normalize(tokens.mean(dim=1), dim=1)
    torch.testing.assert_close(model(*inputs, torch.ones(1, 3)), expected)


@torch.inference_mode()
def test_rows_are_independent_of_their_batch() -> None:
    model = FusionModel().eval()
    inputs = features(len(NON_EMPTY))
    batched = model(*inputs, NON_EMPTY)
    for row in range(len(NON_EMPTY)):
        alone = model(*(feature[row : row + 1] for feature in inputs), NON_EMPTY[row : row + 1])
        torch.testing.assert_close(alone, batched[row : row + 1], rtol=1e-5, atol=1e-6)


def test_initialisation_is_deterministic() -> None:
    first, second = FusionModel().state_dict(), FusionModel().state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    other_seed = FusionModel(seed=1).state_dict()
    assert not torch.equal(first["projections.0.weight"], other_seed["projections.0.weight"])


def test_initialisation_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    FusionModel()
    assert torch.equal(torch.rand(4), expected)


def test_projections_start_orthonormal() -> None:
    for projection in FusionModel().projections:
        weight = projection.weight.detach()
        torch.testing.assert_close(weight @ weight.T, torch.eye(FUSED_DIM), atol=1e-5, rtol=0)


@torch.inference_mode()
def test_untrained_fusion_keeps_text_similarity() -> None:
    """Pairs of text embeddings at cosines from ~0 to ~0.95 keep their cosine within 0.1
    after text-only fusion, so retrieval works before any training."""
    model = FusionModel().eval()
    generator = torch.Generator().manual_seed(0)
    anchor = F.normalize(torch.randn(64, MODALITY_DIMS[0], generator=generator), dim=1)
    noise = F.normalize(torch.randn(64, MODALITY_DIMS[0], generator=generator), dim=1)
    mix = torch.linspace(0.0, 3.0, 64).unsqueeze(1)
    other = F.normalize(anchor * mix + noise, dim=1)
    before = (anchor * other).sum(dim=1)
    mask = torch.tensor([[1.0, 0.0, 0.0]]).expand(64, 3)
    zeros = [torch.zeros(64, dim) for dim in INPUT_DIMS[1:]]
    after = (model(anchor, *zeros, mask) * model(other, *zeros, mask)).sum(dim=1)
    assert before.min() < 0.2 and before.max() > 0.9
    assert (after - before).abs().max() < 0.1


def test_modality_dims_below_the_fused_dim_are_rejected() -> None:
    with pytest.raises(ValueError, match="fused_dim"):
        FusionModel(modality_dims=(384, 128, 512))


def test_trained_weights_leave_the_untrainable_modalities_at_their_seeded_init(
    trained: FusionModel,
) -> None:
    """MovieLens trains text and the gate only; image and audio stay as initialised, which
    is what models/weights/*.json and the README claim."""
    initial = FusionModel()
    for index in FROZEN_MODALITIES:
        for name in ("norms", "projections"):
            got = getattr(trained, name)[index].state_dict()
            want = getattr(initial, name)[index].state_dict()
            # Up to rounding: the orthogonal init's QR differs in the last bit across CPUs.
            assert all(torch.allclose(got[key], want[key], rtol=0, atol=1e-6) for key in want), (
                name,
                index,
            )
    assert not torch.equal(trained.projections[0].weight, initial.projections[0].weight)
    assert not torch.equal(trained.gate.weight, initial.gate.weight)


def test_weights_files_are_found_by_version(tmp_path: Path) -> None:
    for version in (3, 12):
        fusion.save_weights(FusionModel(seed=version), fusion.weights_path(version, tmp_path))
    (tmp_path / "fusion-vx.pt").write_bytes(b"")
    (tmp_path / "other.pt").write_bytes(b"")
    assert fusion.weights_versions(tmp_path) == [3, 12]
    loaded = fusion.load_weights(fusion.weights_path(12, tmp_path))
    assert not loaded.training
    want = FusionModel(seed=12).state_dict()
    assert all(torch.equal(loaded.state_dict()[key], want[key]) for key in want)
