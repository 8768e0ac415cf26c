"""The VARIANTS setting's schema: one entry per A/B variant (worker/variants.py uses them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RankingOverrides(BaseModel):
    """The ranking settings an A/B variant may change (a misspelt one is an error)."""

    model_config = ConfigDict(extra="forbid")

    popularity_weight: float | None = Field(default=None, ge=0)
    freshness_boost: float | None = Field(default=None, ge=0)
    mmr_lambda: float | None = Field(default=None, ge=0, le=1)
    negative_feedback_weight: float | None = Field(default=None, ge=0)
    covisitation_weight: float | None = Field(default=None, ge=0)


class VariantSpec(BaseModel):
    """One A/B variant (worker/variants.py)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: float = Field(gt=0)
    ranking: RankingOverrides = Field(default_factory=RankingOverrides)
