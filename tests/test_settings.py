import pytest

from worker.settings import SettingsError, load_settings


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
    ],
)
def test_bad_values_fail_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
