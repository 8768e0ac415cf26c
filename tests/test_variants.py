from collections import Counter

import pytest

from worker.ranking import RankingParams
from worker.settings import SettingsError, load_settings
from worker.variants import DEFAULT_VARIANT, Variants, bucket


def _variants(specs: list[dict[str, object]]) -> Variants:
    settings = load_settings(variants=specs)
    return Variants(settings.variants, RankingParams.from_settings(settings))


def test_without_variants_every_user_is_in_default_with_the_settings() -> None:
    settings = load_settings()
    variants = Variants([], RankingParams.from_settings(settings))
    assert variants.assign("anyone").name == DEFAULT_VARIANT
    assert variants.assign("anyone").params == RankingParams.from_settings(settings)


def test_users_split_by_weight_and_keep_their_variant() -> None:
    variants = _variants([{"name": "a", "weight": 1}, {"name": "b", "weight": 3}])
    counts = Counter(variants.assign(f"user-{n}").name for n in range(20_000))
    assert 0.23 < counts["a"] / 20_000 < 0.27
    assert [variants.assign("u-7").name for _ in range(3)] == [variants.assign("u-7").name] * 3
    assert bucket("u-7") == bucket("u-7")


def test_a_variant_overrides_only_the_ranking_settings_it_names() -> None:
    variants = _variants(
        [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "ranking": {"mmr_lambda": 0.5}}]
    )
    a, b = variants.variants
    assert b.params.mmr_lambda == 0.5 and a.params.mmr_lambda != 0.5
    assert b.params.k == a.params.k


def test_rows_are_grouped_by_variant_in_batch_order() -> None:
    variants = _variants([{"name": "a", "weight": 1}, {"name": "b", "weight": 1}])
    users = [f"user-{n}" for n in range(50)]
    groups = variants.rows_by_variant(users)
    assert sorted(row for rows in groups.values() for row in rows) == list(range(50))
    for variant, rows in groups.items():
        assert all(variants.assign(users[row]) == variant for row in rows)


@pytest.mark.parametrize(
    "specs",
    [
        [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}],
        [{"name": "a", "weight": 0}],
        [{"name": "a", "weight": 1, "ranking": {"mmr_lamda": 0.5}}],
        [{"name": "bad name", "weight": 1}],
    ],
)
def test_bad_variants_are_a_settings_error_naming_variants(specs: list[dict[str, object]]) -> None:
    with pytest.raises(SettingsError, match="VARIANTS"):
        load_settings(variants=specs)
