"""Multimodal fusion: per-modality features -> one L2-normalised item vector.

Each present modality is LayerNorm-ed and projected into a shared `FUSED_DIM` space (one
"token" per modality); a learned gate scores the tokens, a softmax restricted to the present
modalities weights them, and the weighted sum is L2-normalised. Missing modalities get
exactly zero weight, so their (zero) feature rows never leak into the vector.

Untrained, the model is still useful: projections are orthogonal (a random rotation +
truncation, which keeps cosine geometry approximately intact) and the gate is zero (uniform
weights over the present modalities), so e.g. text-only similarity survives fusion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Feature sizes in mask-column order: text (MiniLM), image (EfficientNet-Lite0), audio (aiSFX).
MODALITY_DIMS: tuple[int, ...] = (384, 1280, 512)
FUSED_DIM = 256
# Added to the gate scores of absent modalities: exp(-1e4) underflows to exactly 0 in
# float32, and unlike -inf it cannot produce NaN when every modality is absent.
_ABSENT_SCORE = -1e4


class FusionModel(nn.Module):
    """`forward(text [B,384], image [B,1280], audio [B,512], mask [B,3]) -> [B,FUSED_DIM]`.

    `mask[b, m]` is 1.0 when modality m of row b is present. Rows with an empty mask come
    out as all-zero vectors; every other row is a finite unit vector.
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

    def forward(self, text: Tensor, image: Tensor, audio: Tensor, mask: Tensor) -> Tensor:
        features = (text, image, audio)
        tokens = torch.stack(
            [
                projection(norm(feature))
                for feature, norm, projection in zip(
                    features, self.norms, self.projections, strict=True
                )
            ],
            dim=1,
        )  # [B, M, D]
        mask = mask.to(tokens.dtype)
        scores = self.gate(torch.tanh(tokens)).squeeze(-1) + (1.0 - mask) * _ABSENT_SCORE
        # The extra `* mask` zeroes the uniform weights an all-absent row would get.
        weights = torch.softmax(scores, dim=1) * mask
        fused = (weights.unsqueeze(-1) * tokens).sum(dim=1)
        return F.normalize(fused, p=2.0, dim=1, eps=1e-12)
