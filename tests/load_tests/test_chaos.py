"""The chaos scenarios, short: each on its own local stack (loopback, bounded), with the
promises of README's "Delivery guarantees" checked on the accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

from load_tests.chaos import ChaosOptions, run_scenario

pytestmark = pytest.mark.integration

SHORT = ChaosOptions(
    events=200, rate=100.0, users=50, items=40, cycles=2, interval_s=2.0, outage_s=4.0,
    poison=60, grace_s=30.0,
)  # fmt: skip
# Redelivery after kill -9 is bounded by the batch in flight on each partition, per kill.
MAX_DUPLICATES = 64 * 4 * SHORT.cycles


def _no_loss(result: dict[str, object], workdir: Path) -> None:
    # On failure, the scenario's counts and the workers' last log lines: the run's
    # directory is gone by the time anyone reads a CI log.
    why = f"{result}\n{_log_tails(workdir)}"
    assert result["lost"] == 0 and result["crashes"] == 0, why
    assert result["double_counted"] == 0 and result["missing_from_state"] == 0, why


def _log_tails(workdir: Path, lines: int = 40) -> str:
    tails = []
    for log in sorted(workdir.rglob("worker-*.log")):
        kept = [
            line for line in log.read_text(errors="replace").splitlines() if "rdkafka" not in line
        ]
        tails.append(f"--- {log.name}\n" + "\n".join(kept[-lines:]))
    return "\n".join(tails)


async def test_kill9_loses_nothing_and_duplicates_at_most_a_batch_per_kill(tmp_path: Path) -> None:
    result = await run_scenario("kill9", SHORT, tmp_path)
    _no_loss(result, tmp_path)
    assert result["answered"] == SHORT.events
    assert result["duplicated"] <= MAX_DUPLICATES


async def test_sigterm_loses_nothing_and_exits_fast(tmp_path: Path) -> None:
    result = await run_scenario("sigterm", SHORT, tmp_path)
    _no_loss(result, tmp_path)
    assert result["answered"] == SHORT.events
    assert result["sigterm_exit_s_max"] < 5.0


async def test_a_triton_outage_shows_in_readiness_and_counts_nothing_twice(tmp_path: Path) -> None:
    result = await run_scenario("triton-outage", SHORT, tmp_path)
    _no_loss(result, tmp_path)
    assert result["not_ready_after_s"] is not None and result["not_ready_after_s"] <= 1.5
    assert result["ready_while_down_share"] == 0.0 and result["ready_after"] == 1.0
    assert result["answers_resumed_s_after_triton_ready"] is not None
    assert result["answers_resumed_s_after_triton_ready"] <= 2.0
    assert result["trending_double_counted"] == 0


async def test_after_the_broker_loses_its_data_topics_come_back_and_answers_flow(
    tmp_path: Path,
) -> None:
    result = await run_scenario("broker-loss", SHORT, tmp_path)
    _no_loss(result, tmp_path)
    assert result["topics_recreated"] >= 1
    assert result["answered"] == result["sent"]


async def test_malformed_input_of_every_kind_is_dead_lettered_once_and_stalls_nothing(
    tmp_path: Path,
) -> None:
    result = await run_scenario("poison", SHORT, tmp_path)
    _no_loss(result, tmp_path)
    assert result["kinds"] >= 30
    assert result["kinds_neither_dead_lettered_nor_accepted"] == []
    assert result["kinds_accepted"] == []
    assert result["malformed_dead_lettered_twice"] == 0
    # Bombs are refused from their headers: Triton's memory stays where it was.
    assert result["triton_rss_growth"] <= 0.10
    assert result["worker_rss_mb_after"] <= 1.5 * result["worker_rss_mb_before"]


async def test_items_ingested_across_kills_are_all_stored(tmp_path: Path) -> None:
    result = await run_scenario("items-crash", SHORT, tmp_path)
    assert result["crashes"] == 0 and result["items_missing"] == 0


async def test_three_workers_killed_in_turn_on_fresh_disks_lose_nothing_and_forget_no_user(
    tmp_path: Path,
) -> None:
    result = await run_scenario("scale-out", SHORT, tmp_path)
    _no_loss(result, tmp_path)
    assert result["answered"] == SHORT.events
    assert result["seen_violations"] == 0, "a moved user was recommended what they had seen"
    assert result["duplicated"] <= MAX_DUPLICATES
