"""A real open-loop run against the real worker (fresh broker, shared tritonserver): the books
must balance and the worker must dead-letter exactly the malformed events."""

from __future__ import annotations

from pathlib import Path

import pytest

from load_tests.generator import RunOptions
from load_tests.schedule import parse_mix
from load_tests.session import Plan, Session, Workload
from worker.settings import load_settings
from worker.stack.tritonserver import TritonServer

pytestmark = pytest.mark.integration


def test_worker_run_accounts_for_every_event_next_to_the_floor(
    triton_server: TritonServer, tmp_path: Path
) -> None:
    # No bootstrap servers: the session starts its own broker and worker, seeds the catalogue.
    base = load_settings(
        triton_url=triton_server.http_url, stack_dir=tmp_path / "stack", log_level="WARNING"
    )
    workload = Workload(
        users=200,
        items=100,
        mix=parse_mix("view=0.6,click=0.3,like=0.1"),
        zipf_users=1.1,
        zipf_items=1.1,
        arrival="poisson",
        bad_fraction=0.05,
        seed=21,
    )
    # The worker's store also holds synthetic items (--extra-items), and every user comes
    # with 60 past events (--user-history): searched, excluded, answered.
    plan = Plan(floor=True, worker=True, seed_catalogue=True, extra_items=500, user_history=60)
    with Session(base, plan, workload, RunOptions(grace_s=60.0)) as session:
        results = session.measure(rate=100.0, duration_s=3.0)

    assert list(results) == ["raw_floor", "floor", "worker"]  # the floors are measured first
    for label, report in results.items():
        accounted = report["matched"] + report["dlq"] + report["missing"]
        assert accounted + report["send_errors"] == report["sent"] > 0, label
        assert report["missing"] == 0 and report["send_errors"] == 0, label
        assert report["bad_sent"] > 0, label
        assert report["dlq"] == report["bad_sent"] and report["dlq_unexpected"] == 0, label
        latency = report["latency_ms"]
        ordered = [latency[k] for k in ("p50", "p90", "p99", "p999", "max")]
        assert ordered == sorted(ordered), label
    assert results["worker"]["topics"]["events"] != results["floor"]["topics"]["events"]
    # Where the worker's time went, from its own metrics; the echo has no stages.
    stages = results["worker"]["stages_ms"]
    assert {"decode", "state", "triton", "qdrant", "rank", "publish"} <= set(stages)
    assert stages["batch_size"] >= 1.0
    assert results["floor"]["stages_ms"] == {}
    # CPU per event of every process the session started, from /proc (Triton came by URL:
    # not the session's, not measured).
    worker_cpu = results["worker"]["cpu_ms_per_event"]
    floor_cpu = results["floor"]["cpu_ms_per_event"]
    assert set(worker_cpu) == set(floor_cpu) == {"system", "broker", "generator"}
    assert min(worker_cpu["system"], floor_cpu["system"], worker_cpu["broker"]) > 0
