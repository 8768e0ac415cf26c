"""The replay's metric arithmetic: precision and F1 next to recall, and the sampled AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.evaluate.metrics import MethodMetrics, sample_negatives, sampled_auc


def test_a_target_above_every_negative_has_auc_1() -> None:
    assert sampled_auc(5.0, [4.0, 1.0, -3.0]) == 1.0


def test_a_target_below_every_negative_has_auc_0() -> None:
    assert sampled_auc(-3.0, [4.0, 1.0, 0.0]) == 0.0


def test_ties_count_half() -> None:
    assert sampled_auc(1.0, [1.0, 1.0]) == 0.5
    # An item a method cannot rank at all (-inf) ties with another such item.
    assert sampled_auc(-math.inf, [-math.inf, -math.inf]) == 0.5


def test_auc_is_the_share_of_pairs_won_over_every_target_and_negative() -> None:
    # Target 2 beats 1 and 0, ties 2, loses to 3: 2.5 of 4. Target 0: 0 won, 1 tie: 0.5 of 4.
    assert sampled_auc(2.0, [3.0, 2.0, 1.0, 0.0]) == pytest.approx(2.5 / 4)
    assert sampled_auc([2.0, 0.0], [3.0, 2.0, 1.0, 0.0]) == pytest.approx(3.0 / 8)


def test_auc_of_nothing_is_nan() -> None:
    assert math.isnan(sampled_auc(1.0, []))
    assert math.isnan(sampled_auc([], [1.0]))


def test_negatives_are_distinct_and_the_same_for_the_same_seed() -> None:
    pool = np.arange(1000)
    first = sample_negatives(pool, 100, (0, 42))
    assert len(set(first.tolist())) == 100 and set(first.tolist()) <= set(pool.tolist())
    np.testing.assert_array_equal(first, sample_negatives(pool, 100, (0, 42)))
    assert not np.array_equal(first, sample_negatives(pool, 100, (0, 43)))


def test_a_pool_smaller_than_the_sample_is_taken_whole() -> None:
    np.testing.assert_array_equal(sample_negatives(np.array([3, 7]), 100, 0), [3, 7])


def test_precision_counts_every_one_of_the_k_slots() -> None:
    metrics = MethodMetrics(k=10)
    metrics.record(["a", "b", "c"], "b", new_item=False)  # hit at rank 2, in a short list
    for target in ("x", "y", "z"):
        metrics.record(["a", "b", "c"], target, new_item=False)
    summary = metrics.summary(catalogue_size=10)
    assert summary["recall@10"] == 0.25
    assert summary["precision@10"] == 0.025  # 1 hit / (10 slots * 4 events)
    # 2PR / (P + R) = 2 * 0.025 * 0.25 / 0.275 = 2 hits / (11 * 4 events)
    assert summary["f1@10"] == pytest.approx(2 / 44, abs=1e-5)
    assert summary["mrr"] == 0.125 and summary["coverage"] == 0.3


def test_f1_equals_the_mean_of_each_events_own_f1() -> None:
    metrics = MethodMetrics(k=5)
    hits = [True, False, True, True, False, False, False]
    for hit in hits:
        metrics.record(["t" if hit else "o"], "t", new_item=False)
    per_event = [2 * (1 / 5) * 1 / (1 / 5 + 1) if hit else 0.0 for hit in hits]
    assert metrics.summary(1)["f1@5"] == pytest.approx(np.mean(per_event), abs=1e-5)


def test_no_hits_give_zero_precision_and_f1() -> None:
    metrics = MethodMetrics(k=10)
    metrics.record(["a"], "b", new_item=False)
    summary = metrics.summary(1)
    assert summary["precision@10"] == 0.0 and summary["f1@10"] == 0.0


def test_the_auc_is_averaged_over_events_that_had_negatives() -> None:
    metrics = MethodMetrics(k=10)
    metrics.record_auc(1.0, [0.0, 0.0])  # 1
    metrics.record_auc(0.0, [1.0, 0.0])  # 0.25
    metrics.record_auc(0.0, [])  # no negatives: left out
    assert metrics.summary(1)["auc"] == 0.625
    assert MethodMetrics(k=10).summary(1)["auc"] is None
