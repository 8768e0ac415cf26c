from pathlib import Path

import pytest

from worker.stack.broker import LocalBroker, api_versions_ok

pytestmark = pytest.mark.integration


def test_local_broker_answers_api_versions_and_stops_cleanly(tmp_path: Path) -> None:
    with LocalBroker(tmp_path) as broker:
        assert api_versions_ok("127.0.0.1", broker.port)
        port = broker.port
    assert not api_versions_ok("127.0.0.1", port)
    assert broker.log_path.exists()


def test_probe_is_false_when_nothing_listens() -> None:
    from worker.stack.process import free_port

    assert not api_versions_ok("127.0.0.1", free_port(), timeout_s=0.2)
