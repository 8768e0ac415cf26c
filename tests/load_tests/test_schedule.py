"""The event plan: intended send times, Zipf sampling, and the payloads the generator sends."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from load_tests.schedule import (
    EventIds,
    EventPlan,
    ZipfSampler,
    build_plan,
    parse_mix,
    send_offsets,
)
from worker.events import parse_event
from worker.validation import InvalidMessage

MIX = {"view": 0.6, "click": 0.3, "like": 0.1}


def test_constant_arrivals_are_evenly_spaced_at_the_target_rate() -> None:
    offsets = send_offsets(500.0, 4.0, "constant", np.random.default_rng(0))
    assert len(offsets) == 2000
    assert offsets[0] == 0.0
    assert np.allclose(np.diff(offsets), 1 / 500.0)
    assert offsets[-1] < 4.0


def test_poisson_arrivals_are_ascending_within_the_duration_near_the_target_rate() -> None:
    offsets = send_offsets(1000.0, 20.0, "poisson", np.random.default_rng(3))
    assert offsets[0] == 0.0
    assert np.all(np.diff(offsets) >= 0)
    assert offsets[-1] < 20.0
    assert abs(len(offsets) / 20.0 - 1000.0) < 30  # ~4 standard deviations of a Poisson count


def test_non_positive_rate_is_rejected() -> None:
    with pytest.raises(ValueError):
        send_offsets(0.0, 1.0, "constant", np.random.default_rng(0))


def test_zipf_sampling_is_deterministic_for_a_seed() -> None:
    sampler = ZipfSampler(1000, 1.1)
    a = sampler.sample(np.random.default_rng(42), 5000)
    b = sampler.sample(np.random.default_rng(42), 5000)
    c = sampler.sample(np.random.default_rng(43), 5000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_zipf_sampling_favours_low_ranks_and_stays_in_range() -> None:
    ranks = ZipfSampler(100, 1.1).sample(np.random.default_rng(1), 20_000)
    counts = np.bincount(ranks, minlength=100)
    assert ranks.min() >= 0 and ranks.max() < 100
    assert counts[0] == counts.max()
    assert counts[0] > 5 * counts[50]


def test_zipf_exponent_zero_is_uniform() -> None:
    ranks = ZipfSampler(10, 0.0).sample(np.random.default_rng(2), 50_000)
    shares = np.bincount(ranks, minlength=10) / len(ranks)
    assert np.allclose(shares, 0.1, atol=0.01)


def test_mix_is_normalised_and_rejects_unknown_types() -> None:
    assert parse_mix("view=6,click=3,like=1") == pytest.approx(MIX)
    with pytest.raises(ValueError, match="unknown event type"):
        parse_mix("view=1,teleport=1")
    with pytest.raises(ValueError):
        parse_mix("view")


def _plan(seed: int = 5, bad_fraction: float = 0.0) -> EventPlan:
    return build_plan(
        run_id="abc",
        rate=200.0,
        duration_s=2.0,
        users=50,
        items=30,
        mix=MIX,
        zipf_users=1.1,
        zipf_items=1.1,
        bad_fraction=bad_fraction,
        seed=seed,
    )


def test_payload_is_a_valid_event_keyed_by_user_with_the_intended_time() -> None:
    plan = _plan()
    for seq in range(len(plan)):
        value = plan.payload(seq, 1_700_000_000.25 + seq)
        event = parse_event(plan.keys[seq], value)
        assert event.event_id == plan.ids.event(seq)
        assert event.ts == pytest.approx(1_700_000_000.25 + seq)
        assert event.type in MIX
        assert 1 <= int(event.item_id) <= 30
        assert plan.keys[seq] == event.user_id.encode()


def test_plans_with_the_same_seed_send_the_same_events() -> None:
    a, b, c = _plan(seed=9), _plan(seed=9), _plan(seed=10)
    assert a.prefixes == b.prefixes and a.keys == b.keys
    assert a.prefixes != c.prefixes


def test_bad_events_fail_the_workers_validation_and_good_ones_pass() -> None:
    plan = _plan(bad_fraction=0.2)
    assert 0 < plan.bad.sum() < len(plan)
    for seq in range(len(plan)):
        value = plan.payload(seq, 1_700_000_000.0)
        if plan.bad[seq]:
            with pytest.raises(InvalidMessage):
                parse_event(plan.keys[seq], value)
            assert orjson.loads(value)["event_id"] == plan.ids.event(seq)  # still attributable
        else:
            parse_event(plan.keys[seq], value)


def test_warmup_events_are_valid_and_distinguishable_from_measured_ones() -> None:
    plan = _plan()
    key, value = plan.warmup_event(3, 1_700_000_000.0)
    event = parse_event(key, value)
    assert plan.ids.parse(event.event_id) == event.event_id
    assert plan.ids.parse(plan.ids.event(17)) == 17


def test_event_ids_of_other_runs_are_not_claimed() -> None:
    ids = EventIds("abc")
    assert ids.parse("lt-xyz-17") is None
    assert ids.parse("lt-abc-") is None
    assert ids.parse(None) is None
    assert ids.parse(17) is None
