"""A/B variants: named ranking parameters, each user assigned to one by a stable hash (pure).

VARIANTS is a JSON list, e.g.
    [{"name": "control", "weight": 0.5},
     {"name": "diverse", "weight": 0.5, "ranking": {"mmr_lambda": 0.6}}]
`ranking` overrides the ranking settings of the same names (see RankingParams) for the
variant's users. A user's variant is decided by the blake2b digest of `user_id` alone, so it
is the same on every worker, after every restart and in the replay; changing the weights
moves only the users whose bucket changes side. Unset: one variant, "default", with the
settings as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from worker.ranking import RankingParams
from worker.variant_spec import VariantSpec

DEFAULT_VARIANT = "default"
# Buckets a user id hashes into; weights are resolved to whole buckets.
_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    params: RankingParams


def bucket(user_id: str) -> int:
    """The user's stable bucket in [0, _BUCKETS)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, person=b"variant").digest()
    return int.from_bytes(digest, "little") % _BUCKETS


class Variants:
    def __init__(self, specs: Sequence[VariantSpec], base: RankingParams) -> None:
        if not specs:
            specs = [VariantSpec(name=DEFAULT_VARIANT, weight=1.0)]
        total = sum(spec.weight for spec in specs)
        self.variants: list[Variant] = []
        self._upper: list[int] = []  # each variant's exclusive upper bucket
        upper = 0.0
        for spec in specs:
            overrides = spec.ranking.model_dump(exclude_none=True)
            self.variants.append(Variant(spec.name, dataclasses.replace(base, **overrides)))
            upper += spec.weight / total * _BUCKETS
            self._upper.append(round(upper))
        self._upper[-1] = _BUCKETS

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def assign(self, user_id: str) -> Variant:
        b = bucket(user_id)
        return next(v for v, upper in zip(self.variants, self._upper, strict=True) if b < upper)

    def rows_by_variant(self, user_ids: Sequence[str]) -> dict[Variant, list[int]]:
        """Batch rows grouped by their user's variant (rankings run once per group)."""
        groups: dict[Variant, list[int]] = {}
        for row, user_id in enumerate(user_ids):
            groups.setdefault(self.assign(user_id), []).append(row)
        return groups
