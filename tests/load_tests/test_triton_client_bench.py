import pytest

from load_tests.triton_client_bench import run
from worker.stack.tritonserver import TritonServer

pytestmark = pytest.mark.integration


def test_both_clients_are_timed_for_every_shape(triton_server: TritonServer) -> None:
    report = run(triton_server.http_url, [(1, 1), (3, 4)], requests=10)
    assert [(r["users"], r["history"]) for r in report["shapes"]] == [(1, 1), (3, 4)]
    for row in report["shapes"]:
        assert row["tritonclient_cpu_ms"] > 0 and row["direct_cpu_ms"] > 0
        assert row["direct_wall_ms"] > 0 and row["cpu_ratio"] > 0
