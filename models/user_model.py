"""The sequence user encoder: a small SASRec-style transformer over a user's recent items.

Input tokens are the user's last interactions, oldest first: the item's content vector (the
item space Qdrant searches) projected to `d`, plus an embedding of the event's signed
strength, of the time since the previous event and of the position. Causal self-attention
runs over them; the last token's state is projected back to the item space and
L2-normalised, so the user vector is scored against items by cosine, like the fallback mean.

There are no item-id embeddings: a brand-new item is understood from its content vector
alone, both as history and as a candidate.

Event strength is the signed weight the worker derives from the event type (and rating);
the embedding interpolates linearly between learned anchors at STRENGTH_KNOTS, so weights
beyond the trained range (a "purchase" = 3) clamp to the strongest anchor rather than
landing on an untrained one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "user_encoder.pt"
CARD_FILE = WEIGHTS_DIR / "user_encoder.json"

# Evenly spaced, so the hat functions below sum to 1 anywhere in [-1, 1].
STRENGTH_KNOTS: tuple[float, ...] = (-1.0, -0.6, -0.2, 0.2, 0.6, 1.0)
_KNOT_SPACING = 0.4
# Gap buckets: floor(log2(1 + seconds)), so 0 s, 1 s, 2-3 s, ... up to 2**23 s (~97 days).
GAP_BUCKETS = 24


@dataclass(frozen=True)
class UserModelConfig:
    item_dim: int = 256
    d: int = 64
    heads: int = 2
    layers: int = 2
    max_len: int = 50
    dropout: float = 0.2


class _Block(nn.Module):
    """Pre-norm causal self-attention + feed-forward (written out: it exports to ONNX as
    plain MatMul/Softmax, with no fused-kernel path to trip over)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, blocked: Tensor, index: Tensor | None = None) -> Tensor:
        """x [B, T, d]; blocked [B, 1, T, T] True where attention is not allowed -> [B, T, d].

        With `index` [B], only those positions are queries -> [B, 1, d]: serving reads one
        position per user, so its last block skips everyone else's attention and
        feed-forward."""
        batch, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if index is not None:
            pick = index.view(-1, 1, 1).expand(-1, 1, d)
            x, q = x.gather(1, pick), q.gather(1, pick)
            blocked = blocked.gather(2, index.view(-1, 1, 1, 1).expand(-1, 1, 1, length))
        width = q.shape[1]

        def heads(t: Tensor, n: int) -> Tensor:
            return t.reshape(batch, n, self.heads, d // self.heads).transpose(1, 2)

        scores = heads(q, width) @ heads(k, length).transpose(-1, -2) / math.sqrt(d // self.heads)
        attn = torch.softmax(scores.masked_fill(blocked, -1e4), dim=-1)
        mixed = (self.drop(attn) @ heads(v, length)).transpose(1, 2).reshape(batch, width, d)
        x = x + self.drop(self.proj(mixed))
        return x + self.drop(self.ff(self.norm2(x)))


class SequenceUserEncoder(nn.Module):
    """`forward(vectors [B,T,D], weights [B,T], gaps_s [B,T], lengths [B]) -> [B,D]` unit
    user vectors (all-zero for rows of length 0). `states` gives every position's vector
    (position t sees items 0..t), which training uses to predict each next item."""

    def __init__(self, config: UserModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d
        self.item_in = nn.Linear(config.item_dim, d)
        self.strength = nn.Parameter(torch.zeros(len(STRENGTH_KNOTS), d))
        self.gap = nn.Embedding(GAP_BUCKETS, d)
        self.position = nn.Embedding(config.max_len, d)
        self.blocks = nn.ModuleList(
            _Block(d, config.heads, config.dropout) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(d)
        self.item_out = nn.Linear(d, config.item_dim)
        self.drop = nn.Dropout(config.dropout)
        nn.init.normal_(self.strength, std=0.02)
        self.register_buffer("knots", torch.tensor(STRENGTH_KNOTS), persistent=False)

    def _embed(
        self, vectors: Tensor, weights: Tensor, gaps_s: Tensor, lengths: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Input tokens [B, T, d] and the attention mask [B, 1, T, T] (True: blocked)."""
        length = vectors.shape[1]
        positions = torch.arange(length, device=vectors.device)
        # Hat functions over the knots: a piecewise-linear embedding of the signed weight.
        hats = F.relu(1 - (weights.clamp(-1, 1).unsqueeze(-1) - self.knots).abs() / _KNOT_SPACING)
        buckets = torch.floor(torch.log2(1 + gaps_s.clamp(min=0))).clamp(max=GAP_BUCKETS - 1)
        x = self.item_in(vectors) + hats @ self.strength + self.gap(buckets.long())
        x = self.drop(x + self.position(positions))
        padding = positions.unsqueeze(0) >= lengths.unsqueeze(1)  # [B, T]
        future = positions.unsqueeze(1) < positions.unsqueeze(0)  # [T, T], key after query
        blocked = future.unsqueeze(0) | padding.unsqueeze(1)  # [B, T(query), T(key)]
        return x, blocked.unsqueeze(1)

    def states(self, vectors: Tensor, weights: Tensor, gaps_s: Tensor, lengths: Tensor) -> Tensor:
        x, blocked = self._embed(vectors, weights, gaps_s, lengths)
        for block in self.blocks:
            x = block(x, blocked)
        return F.normalize(self.item_out(self.norm(x)), dim=-1)

    def forward(self, vectors: Tensor, weights: Tensor, gaps_s: Tensor, lengths: Tensor) -> Tensor:
        """The state at each row's last real position (what `states` gives there)."""
        x, blocked = self._embed(vectors, weights, gaps_s, lengths)
        *earlier, last_block = self.blocks
        for block in earlier:
            x = block(x, blocked)
        last = (lengths - 1).clamp(min=0)
        picked = last_block(x, blocked, last).squeeze(1)
        out = F.normalize(self.item_out(self.norm(picked)), dim=-1)
        return out * (lengths > 0).unsqueeze(1).to(out.dtype)


def save(
    model: SequenceUserEncoder,
    card: dict[str, object],
    reference_items: Tensor,
    path: Path = WEIGHTS_FILE,
) -> None:
    """Weights (float32 state dict), the training catalogue's item vectors (float16: the
    served model measures how familiar a user's items are against them) and a JSON model
    card next to them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": asdict(model.config),
            "state": model.state_dict(),
            "reference_items": reference_items.to(torch.float16),
        },
        tmp,
    )
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def load(path: Path = WEIGHTS_FILE) -> SequenceUserEncoder:
    """The trained encoder in eval mode."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = SequenceUserEncoder(UserModelConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    return model.eval()


def load_reference_items(path: Path = WEIGHTS_FILE) -> Tensor:
    """[n, item_dim] float16 vectors of the items the encoder was trained on."""
    reference: Tensor = torch.load(path, map_location="cpu", weights_only=True)["reference_items"]
    return reference
