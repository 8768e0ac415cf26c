"""Command-line behaviour that needs no services: argument errors and the step verdict."""

from __future__ import annotations

from typing import Any

import pytest

from load_tests.cli import failure, main
from load_tests.report import repeated_cpu, repeats_table


def _result(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "target_rate": 1000.0,
        "achieved_rate": 998.0,
        "missing": 0,
        "dlq_unexpected": 0,
        "send_errors": 0,
        "latency_ms": {"p50": 20.0, "p99": 80.0},
    }
    return {**result, **overrides}


def test_a_step_within_budget_with_everything_answered_is_sustained() -> None:
    assert failure(_result(), budget_p99_ms=100.0) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"latency_ms": {"p50": 20.0, "p99": 150.0}}, "p99 150.0 ms > budget"),
        ({"missing": 3}, "missing=3"),
        ({"dlq_unexpected": 1}, "dlq_unexpected=1"),
        ({"send_errors": 2}, "send_errors=2"),
        ({"achieved_rate": 700.0}, "could not offer the target rate"),
        ({"latency_ms": {"p50": None, "p99": None}}, "p99 None ms"),
    ],
)
def test_a_step_fails_on_budget_losses_or_an_unoffered_rate(
    overrides: dict[str, Any], reason: str
) -> None:
    why = failure(_result(**overrides), budget_p99_ms=100.0)
    assert why is not None and reason in why


def test_an_invalid_mix_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--mix", "view=1,teleport=1", "--bootstrap", "127.0.0.1:1"]) == 2
    assert "teleport" in capsys.readouterr().err


def test_an_invalid_bootstrap_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--bootstrap", "no-port-here"]) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


def test_a_local_run_cannot_seed_more_items_than_movielens_has(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)  # local, so it seeds
    assert main(["run", "--items", "5000"]) == 2  # rejected before any service starts
    assert "1682" in capsys.readouterr().err


def test_several_workers_are_for_local_runs_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--workers", "2", "--bootstrap", "127.0.0.1:1"]) == 2
    assert main(["run", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_synthetic_items_are_for_local_runs_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--extra-items", "1000", "--bootstrap", "127.0.0.1:1"]) == 2
    assert main(["run", "--extra-items", "-1"]) == 2
    assert "--extra-items" in capsys.readouterr().err


def test_long_lived_users_are_for_local_runs_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--user-history", "100", "--bootstrap", "127.0.0.1:1"]) == 2
    assert main(["run", "--user-history", "-1"]) == 2
    assert "--user-history" in capsys.readouterr().err


def test_repeated_runs_report_each_ratio_to_the_raw_echo_and_their_median() -> None:
    def run(worker: float, raw: float) -> dict[str, dict[str, Any]]:
        return {
            "raw_floor": {"cpu_ms_per_event": {"system": raw}},
            "worker": {"cpu_ms_per_event": {"system": worker}},
        }

    repeats = repeated_cpu([run(2.0, 1.0), run(1.8, 0.6), run(1.9, 0.76)])
    assert repeats["runs"] == 3
    assert repeats["cpu_ms_per_event"]["worker"] == {
        "each": [2.0, 1.8, 1.9], "median": 1.9, "min": 1.8, "max": 2.0,
    }  # fmt: skip
    assert repeats["cpu_vs_raw_echo"]["worker"] == {
        "each": [2.0, 3.0, 2.5], "median": 2.5, "min": 2.0, "max": 3.0,
    }  # fmt: skip
    assert "2.50x the raw echo (2.00-3.00)" in repeats_table(repeats)


def test_a_run_repeated_less_than_once_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--repeat", "0"]) == 2
    assert "--repeat" in capsys.readouterr().err
