"""HDR latency histograms: microsecond resolution, 3 significant digits, up to one hour."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # an hour: anything slower is clamped, not dropped
SIGNIFICANT_FIGURES = 3
SUMMARY_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


class LatencyHistogram:
    def __init__(self) -> None:
        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        # hdrh's get_mean_value walks every bucket in Python (~0.2 s): keep the sum instead.
        self._sum_us = 0

    def record_s(self, seconds: float) -> None:
        us = min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US)
        self._hist.record_value(us)
        self._sum_us += us

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def percentile_ms(self, percentile: float) -> float | None:
        if self.count == 0:
            return None
        return self._hist.get_value_at_percentile(percentile) / 1000.0

    def summary_ms(self) -> dict[str, float | None]:
        """p50/p90/p99/p99.9/max/mean in milliseconds; all None when nothing was recorded."""
        keys = [*SUMMARY_PERCENTILES, "max", "mean"]
        if self.count == 0:
            return dict.fromkeys(keys)
        values = self._hist.get_percentile_to_value_dict(list(SUMMARY_PERCENTILES.values()))
        out: dict[str, float | None] = {
            name: round(values[pct] / 1000.0, 3) for name, pct in SUMMARY_PERCENTILES.items()
        }
        out["max"] = round(self._hist.get_max_value() / 1000.0, 3)
        out["mean"] = round(self._sum_us / self.count / 1000.0, 3)
        return out

    def spectrum_ms(self, ticks_per_half_distance: int = 5) -> list[tuple[float, float]]:
        """(percentile, latency ms) pairs from 0 to 100, denser towards the tail."""
        if self.count == 0:
            return []
        return [
            (round(step.percentile_level_iterated_to, 6), step.value_iterated_to / 1000.0)
            for step in self._hist.get_percentile_iterator(ticks_per_half_distance)
        ]

    def encode(self) -> str:
        """Compressed base64 HDR payload: other HDR tools can decode and merge it."""
        return self._hist.encode().decode()
