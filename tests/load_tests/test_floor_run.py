"""A real open-loop run against the floor echo on a real broker: the books must balance."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from load_tests.cli import main
from worker.stack.broker import LocalBroker

pytestmark = pytest.mark.integration


def test_floor_run_accounts_for_every_event_and_reports_ordered_percentiles(
    broker: LocalBroker, tmp_path: Path
) -> None:
    out = tmp_path / "floor.json"
    png = tmp_path / "floor.png"
    argv = ["run", "--floor-only", "--bootstrap", broker.bootstrap_servers]
    argv += ["--rate", "200", "--duration", "3", "--bad-fraction", "0.05", "--seed", "11"]
    argv += ["--users", "300", "--zipf-users", "1.1", "--grace", "30"]
    argv += ["--out", str(out), "--png", str(png)]
    assert main(argv) == 0

    report = orjson.loads(out.read_bytes())
    assert report["label"] == "floor"
    assert report["sent"] == report["scheduled"] == 600
    accounted = report["matched"] + report["dlq"] + report["missing"] + report["send_errors"]
    assert accounted == report["sent"]
    assert report["missing"] == 0 and report["send_errors"] == 0
    assert report["bad_sent"] > 0
    assert report["dlq"] == report["bad_sent"]  # the echo dead-letters exactly the bad events
    assert report["dlq_unexpected"] == 0 and report["bad_answered"] == 0
    assert report["dlq_stages"] == {"decode": report["dlq"]}
    latency = report["latency_ms"]
    ordered = [latency[k] for k in ("p50", "p90", "p99", "p999", "max")]
    assert ordered == sorted(ordered) and ordered[0] > 0
    assert report["timeline"][-1]["lag"] == 0
    assert png.stat().st_size > 0


def test_the_raw_aiokafka_echo_is_measured_next_to_the_pipeline_echo_in_each_run(
    broker: LocalBroker, tmp_path: Path
) -> None:
    out = tmp_path / "floors.json"
    argv = ["run", "--floor-only", "--bootstrap", broker.bootstrap_servers, "--repeat", "2"]
    argv += ["--rate", "200", "--duration", "1", "--bad-fraction", "0.05", "--seed", "5"]
    argv += ["--users", "100", "--grace", "30", "--out", str(out)]
    assert main(argv) == 0

    report = orjson.loads(out.read_bytes())
    raw = report["raw_floor"]
    assert raw["label"] == "raw_floor"
    assert raw["sent"] == 200 and raw["missing"] == 0 and raw["send_errors"] == 0
    assert raw["dlq"] == raw["bad_sent"] > 0 and raw["dlq_unexpected"] == 0
    assert raw["matched"] + raw["dlq"] == raw["sent"]
    repeats = report["repeats"]
    assert repeats["runs"] == 2
    for system in ("floor", "raw_floor"):
        cpu = repeats["cpu_ms_per_event"][system]
        assert len(cpu["each"]) == 2 and 0 < cpu["min"] <= cpu["median"] <= cpu["max"]
    assert len(repeats["cpu_vs_raw_echo"]["floor"]["each"]) == 2
