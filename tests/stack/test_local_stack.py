from pathlib import Path

import pytest

from worker.settings import load_settings
from worker.stack import LocalStack
from worker.stack.broker import api_versions_ok

pytestmark = pytest.mark.integration


def test_configured_services_are_used_instead_of_local_ones(tmp_path: Path) -> None:
    settings = load_settings(
        kafka_bootstrap_servers="kafka.example:9092",
        triton_url="triton.example:8000",
        stack_dir=tmp_path,
    )
    stack = LocalStack(settings)
    with stack as resolved:
        assert stack.broker is None and stack.triton is None
        assert resolved.kafka_bootstrap_servers == "kafka.example:9092"
        assert resolved.triton_url == "triton.example:8000"


def test_only_the_missing_service_is_started_and_it_is_stopped_on_exit(tmp_path: Path) -> None:
    settings = load_settings(triton_url="triton.example:8000", stack_dir=tmp_path)
    stack = LocalStack(settings)
    with stack as resolved:
        assert stack.triton is None and stack.broker is not None
        host, port = (resolved.kafka_bootstrap_servers or "").split(":")
        assert api_versions_ok(host, int(port))
    assert not api_versions_ok(host, int(port))
