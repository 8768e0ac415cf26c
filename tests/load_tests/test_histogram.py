"""HDR latency summaries: ordered percentiles, a spectrum that climbs to the maximum."""

from __future__ import annotations

import numpy as np
import pytest

from load_tests.histogram import LatencyHistogram


def _skewed() -> LatencyHistogram:
    hist = LatencyHistogram()
    for seconds in np.random.default_rng(0).lognormal(mean=-4.0, sigma=1.0, size=20_000):
        hist.record_s(float(seconds))
    return hist


def test_summary_percentiles_are_monotonic_up_to_the_max() -> None:
    s = _skewed().summary_ms()
    values = [s["p50"], s["p90"], s["p99"], s["p999"], s["max"]]
    assert all(v is not None for v in values)
    assert values == sorted(values)


def test_summary_matches_exact_statistics_within_hdr_precision() -> None:
    hist = LatencyHistogram()
    samples_ms = np.arange(1, 1001, dtype=np.float64)  # 1..1000 ms
    for ms in samples_ms:
        hist.record_s(ms / 1000.0)
    s = hist.summary_ms()
    assert s["p50"] == pytest.approx(500.0, rel=0.002)
    assert s["p99"] == pytest.approx(990.0, rel=0.002)
    assert s["max"] == pytest.approx(1000.0, rel=0.002)
    assert s["mean"] == pytest.approx(samples_ms.mean(), rel=0.002)


def test_an_empty_histogram_reports_no_values() -> None:
    hist = LatencyHistogram()
    assert set(hist.summary_ms().values()) == {None}
    assert hist.spectrum_ms() == []
    assert hist.percentile_ms(99.0) is None


def test_spectrum_climbs_monotonically_to_the_max_at_100_percent() -> None:
    hist = _skewed()
    spectrum = hist.spectrum_ms()
    percentiles = [p for p, _ in spectrum]
    latencies = [ms for _, ms in spectrum]
    assert percentiles == sorted(percentiles) and percentiles[-1] == 100.0
    assert latencies == sorted(latencies)
    assert latencies[-1] == hist.summary_ms()["max"]


def test_values_beyond_the_range_are_clamped_not_dropped() -> None:
    hist = LatencyHistogram()
    hist.record_s(-0.001)  # clocks never run backwards here, but a clamp beats a crash
    hist.record_s(10_000.0)
    assert hist.count == 2
