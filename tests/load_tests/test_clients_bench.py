import json
from pathlib import Path

import pytest

from load_tests.clients_bench import main


def test_both_echoes_answer_every_event_and_their_cpu_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "clients.json"
    assert main(["--rate", "100", "--duration", "1", "--repeat", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    runs = report["cpu_ms_per_event"]
    assert set(runs) == {"aiokafka", "librdkafka"}
    assert all(len(each) == 1 and each[0] > 0 for each in runs.values())
    medians = report["median_cpu_ms_per_event"]
    assert report["librdkafka_vs_aiokafka"] == round(medians["librdkafka"] / medians["aiokafka"], 3)


def test_a_run_needs_a_positive_rate_and_duration(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--rate", "0", "--out", str(tmp_path / "x.json")])
