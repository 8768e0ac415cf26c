"""Multimodal fusion: per-modality features -> one L2-normalised item vector.

Each present modality is LayerNorm-ed and projected into a shared `FUSED_DIM` space (one
"token" per modality); a learned gate scores the tokens, a softmax restricted to the present
tokens weights them, and the weighted sum is L2-normalised. Missing modalities get exactly
zero weight, so their (zero) feature rows never leak into the vector.

An image brings two tokens: its EfficientNet features, and its text-space embedding (the
MiniLM embedding of its top ImageNet class names, see triton_repo/image_encoder/1/
image_text.py). The latter goes through the *text* LayerNorm and projection, so an image-only
item lands in the same region as text about the same things, whatever the image projection
learned.

Untrained, the model is still useful: projections are orthogonal (a random rotation +
truncation, which keeps cosine geometry approximately intact) and the gate is zero (uniform
weights over the present tokens), so e.g. text-only similarity survives fusion. The trained
weights (`python -m models.train_fusion`) are versioned files under models/weights/.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Feature sizes in mask-column order: text (MiniLM), image (EfficientNet-Lite0), audio (aiSFX).
MODALITY_DIMS: tuple[int, ...] = (384, 1280, 512)
FUSED_DIM = 256
# Tokens in gate order: text, image-as-text, image, audio; the mask column each one follows.
TOKENS = ("text", "image_text", "image", "audio")
TOKEN_MODALITY = (0, 1, 1, 2)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_WEIGHTS_NAME = re.compile(r"fusion-v(\d+)\.pt")
# Added to the gate scores of absent modalities: exp(-1e4) underflows to exactly 0 in
# float32, and unlike -inf it cannot produce NaN when every modality is absent.
_ABSENT_SCORE = -1e4


class FusionModel(nn.Module):
    """`forward(text [B,384], image_text [B,384], image [B,1280], audio [B,512], mask [B,3])
    -> [B,FUSED_DIM]`.

    `mask[b, m]` is 1.0 when modality m (text, image, audio) of row b is present; the image
    column covers both image tokens. Rows with an empty mask come out as all-zero vectors;
    every other row is a finite unit vector.
    """

    def __init__(
        self,
        modality_dims: tuple[int, ...] = MODALITY_DIMS,
        fused_dim: int = FUSED_DIM,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(modality_dims) != 3:
            raise ValueError("forward() takes exactly three modalities: text, image, audio")
        if any(dim < fused_dim for dim in modality_dims):
            # An orthogonal [fused_dim, dim] matrix only has orthonormal rows (an isometry on
            # its row space) when dim >= fused_dim.
            raise ValueError(f"every modality dim must be >= fused_dim={fused_dim}")
        self.modality_dims = modality_dims
        self.fused_dim = fused_dim
        # nn.Linear draws its default init from the global RNG; restore that RNG afterwards,
        # since reset_parameters() overwrites those weights from its own generator anyway.
        with torch.random.fork_rng(devices=[]):
            self.norms = nn.ModuleList(nn.LayerNorm(dim) for dim in modality_dims)
            self.projections = nn.ModuleList(
                nn.Linear(dim, fused_dim, bias=False) for dim in modality_dims
            )
            self.gate = nn.Linear(fused_dim, 1)
        # A learned prior per token: how much to trust it, whatever its content.
        self.token_bias = nn.Parameter(torch.zeros(len(TOKENS)))
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        # A private generator: deterministic weights without touching the global RNG.
        generator = torch.Generator().manual_seed(seed)
        for norm in self.norms:
            norm.reset_parameters()
        for projection in self.projections:
            nn.init.orthogonal_(projection.weight, generator=generator)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        nn.init.zeros_(self.token_bias)

    def tokens(self, text: Tensor, image_text: Tensor, image: Tensor, audio: Tensor) -> Tensor:
        """-> [B, len(TOKENS), FUSED_DIM], before gating."""
        text_norm, image_norm, audio_norm = self.norms
        text_proj, image_proj, audio_proj = self.projections
        return torch.stack(
            [
                text_proj(text_norm(text)),
                text_proj(text_norm(image_text)),
                image_proj(image_norm(image)),
                audio_proj(audio_norm(audio)),
            ],
            dim=1,
        )

    def forward(
        self, text: Tensor, image_text: Tensor, image: Tensor, audio: Tensor, mask: Tensor
    ) -> Tensor:
        tokens = self.tokens(text, image_text, image, audio)
        present = mask.to(tokens.dtype)[:, TOKEN_MODALITY]  # [B, len(TOKENS)]
        scores = self.gate(torch.tanh(tokens)).squeeze(-1) + self.token_bias
        scores = scores + (1.0 - present) * _ABSENT_SCORE
        # The extra `* present` zeroes the uniform weights an all-absent row would get.
        weights = torch.softmax(scores, dim=1) * present
        fused = (weights.unsqueeze(-1) * tokens).sum(dim=1)
        return F.normalize(fused, p=2.0, dim=1, eps=1e-12)


def weights_path(version: int, weights_dir: Path | None = None) -> Path:
    return (weights_dir or WEIGHTS_DIR) / f"fusion-v{version}.pt"


def weights_versions(weights_dir: Path | None = None) -> list[int]:
    """The fusion versions that have weights files, ascending."""
    paths = (weights_dir or WEIGHTS_DIR).glob("fusion-v*.pt")
    found = (_WEIGHTS_NAME.fullmatch(path.name) for path in paths)
    return sorted(int(match.group(1)) for match in found if match)


def save_weights(model: FusionModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)


def load_weights(path: Path) -> FusionModel:
    """A FusionModel in eval mode with the weights saved at `path`."""
    model = FusionModel()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
