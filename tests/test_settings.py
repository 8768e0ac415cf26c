import asyncio
import socket
from pathlib import Path

import pytest

from worker.__main__ import main, run_on_loop
from worker.runtime import create_store
from worker.settings import SettingsError, load_settings, unknown_variables
from worker.store import EdgeVectorStore


def test_defaults_point_at_local_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "TRITON_URL", "QDRANT_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers is None and settings.qdrant_url is None
    assert settings.events_topic == "user-events"


def test_environment_overrides_and_json_event_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("EVENTS_BATCH_SIZE", "128")
    monkeypatch.setenv("EVENT_WEIGHTS", '{"view": 0.5, "skip": -1}')
    settings = load_settings()
    assert settings.events_batch_size == 128
    assert settings.event_weights["view"] == 0.5
    assert settings.event_weights["purchase"] == 3.0  # unspecified types keep their default


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "not host:port"),
        ("EVENTS_BATCH_SIZE", "0", "EVENTS_BATCH_SIZE"),
        ("FETCH_MAX_WAIT_MS", "soon", "FETCH_MAX_WAIT_MS"),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "KAFKA_SASL_MECHANISM"),
        ("EVENT_WEIGHTS", '{"poke": 1}', "EVENT_WEIGHTS"),
        ("EVENT_WEIGHTS", "{bad", "event_weights"),
        ("TRITON_URL", "http://triton:8000", "TRITON_URL"),
        ("TRITON_URL", "not a url", "TRITON_URL"),
        ("QDRANT_URL", "ftp://qdrant:6333", "QDRANT_URL"),
        ("ITEM_CACHE_SIZE", "-1", "ITEM_CACHE_SIZE"),
        ("ITEMS_OVERSAMPLING", "0.5", "ITEMS_OVERSAMPLING"),
        ("ITEMS_PROCESS", "sometimes", "ITEMS_PROCESS"),
        ("EVENT_LOOP", "trio", "EVENT_LOOP"),
    ],
)
def test_bad_values_fail_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


@pytest.mark.parametrize(
    ("event_loop", "loop_module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_the_worker_runs_on_the_event_loop_it_is_told(event_loop: str, loop_module: str) -> None:
    async def which_loop() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_on_loop(which_loop(), event_loop).split(".")[0] == loop_module


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles() -> None:
    lines = unknown_variables({"EVENTS_BATCH_SZE": "3", "HOME": "/root", "LOG_LEVEL": "INFO"})
    assert lines == ["unknown variable EVENTS_BATCH_SZE: did you mean EVENTS_BATCH_SIZE?"]


def test_a_busy_metrics_port_or_an_unwritable_data_dir_stops_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("TRITON_URL", "127.0.0.1:9")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("METRICS_PORT", str(busy.getsockname()[1]))
        assert main(["run"]) == 2
    assert "METRICS_PORT=" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("DATA_DIR", str(blocked / "data"))
    assert main(["run"]) == 2
    assert "DATA_DIR=" in capsys.readouterr().err


def test_the_embedded_store_takes_its_search_and_cache_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HNSW_EF", "32")
    monkeypatch.setenv("ITEMS_OVERSAMPLING", "3")
    monkeypatch.setenv("ITEM_CACHE_SIZE", "7")
    store = create_store(load_settings())
    assert isinstance(store, EdgeVectorStore)
    assert (store.hnsw_ef, store.oversampling, store.item_cache_size) == (32, 3.0, 7)


@pytest.mark.parametrize(
    ("value", "always", "from_items"),
    [(None, False, 100_000), ("auto", False, 100_000), ("true", True, None), ("0", False, None)],
)
def test_items_process_is_auto_from_a_size_unless_set(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    value: str | None,
    always: bool,
    from_items: int | None,
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    if value is not None:
        monkeypatch.setenv("ITEMS_PROCESS", value)
    store = create_store(load_settings())
    assert isinstance(store, EdgeVectorStore)
    assert (store.items_process, store.items_process_from) == (always, from_items)
