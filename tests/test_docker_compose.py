"""docker-compose cannot run here (no Docker engine): check it against the code instead."""

from pathlib import Path

import yaml

from worker.settings import Settings
from worker.stack.tritonserver import POLL_REPOSITORY

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_services() -> None:
    services = _compose()["services"]
    assert {"kafka", "qdrant", "triton", "worker", "prometheus", "models"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    gpu = services["triton"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert any(v.startswith("./triton_repo:/models") for v in services["triton"]["volumes"])


def test_worker_environment_uses_real_setting_names() -> None:
    env = _compose()["services"]["worker"]["environment"]
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env) <= fields, f"unknown settings: {set(env) - fields}"
    assert {"KAFKA_BOOTSTRAP_SERVERS", "TRITON_URL", "QDRANT_URL"} <= set(env)
    Settings(**{k.lower(): v for k, v in env.items()})  # values validate too


def test_worker_scales_and_prometheus_scrapes_its_metrics_port() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale needs both absent
    port = int(worker["environment"]["METRICS_PORT"])
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["streamrec-worker"]["dns_sd_configs"][0]["port"] == port


def test_triton_polls_its_repository_like_the_local_stack() -> None:
    triton = _compose()["services"]["triton"]
    command = " ".join(triton["command"])
    assert all(flag in command for flag in POLL_REPOSITORY)
    assert triton["environment"]["PYTHONDONTWRITEBYTECODE"] == "1"


def test_only_loopback_ports_are_published_and_qdrant_needs_the_env_api_key() -> None:
    services = _compose()["services"]
    published = {name: svc.get("ports", []) for name, svc in services.items()}
    assert not published["qdrant"] and not published["triton"]
    for name, ports in published.items():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), (name, ports)
    key = services["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"]
    assert key.startswith("${QDRANT_API_KEY:?")
    assert services["worker"]["environment"]["QDRANT_API_KEY"] == key
    assert "QDRANT_API_KEY=" in (ROOT / ".env.example").read_text()
