"""A short run of `python -m load_tests api` against a real worker (the full run is a
command users run)."""

from __future__ import annotations

import argparse

import pytest

from load_tests.api_bench import measure
from worker.settings import Settings
from worker.stack.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


async def test_reads_under_a_running_stream_are_all_answered_and_timed(
    api_settings: Settings, api_worker: WorkerProcess
) -> None:
    args = argparse.Namespace(items=100, events=20.0, reads=50.0, duration=2.0, seed=3)
    report = await measure(api_settings, api_worker, args)
    assert report["reads"] == 100 and report["statuses"] == {"200": 100}
    assert report["latency_ms"]["p99"] is not None and report["worker_cpu_s"] > 0
    assert report["answer_latency_ms"]["p50"] is not None
