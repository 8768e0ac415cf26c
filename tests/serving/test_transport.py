"""Triton over gRPC answers as over HTTP; over TLS it needs the server's CA."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from worker.stack.tritonserver import TritonServer
from worker.triton import ItemContent, TritonClient, TritonUnavailable
from worker.triton_transport import TritonTransport

pytestmark = pytest.mark.integration

REPO_DIR = Path(__file__).resolve().parents[2] / "triton_repo"


async def test_grpc_and_http_clients_get_the_same_vectors_and_versions(
    triton_client: TritonClient, triton_server: TritonServer
) -> None:
    grpc = TritonClient(triton_server.grpc_url, transport=TritonTransport(protocol="grpc"))
    try:
        await grpc.wait_ready(timeout_s=30.0)
        contents = [ItemContent(text="A film about the sea"), ItemContent(text="Space opera")]
        (via_http, _), (via_grpc, errors) = (
            await triton_client.embed_items(contents),
            await grpc.embed_items(contents),
        )
        assert errors == [None, None]
        np.testing.assert_allclose(via_grpc, via_http, atol=1e-6)
        assert await grpc.model_version() == await triton_client.model_version()
    finally:
        await grpc.close()


@pytest.fixture(scope="module")
def tls_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, Path]]:
    """A tritonserver serving gRPC over TLS with a self-signed certificate for 127.0.0.1,
    holding one small model (the fusion) so it starts in seconds."""
    work = tmp_path_factory.mktemp("tls-triton")
    cert, key = work / "server.pem", work / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    repo = work / "repo"
    repo.mkdir()
    (repo / "fusion").symlink_to(REPO_DIR / "fusion")
    server = TritonServer(
        repo,
        work / "server",
        extra_args=("--grpc-use-ssl=true", f"--grpc-server-cert={cert}",
                    f"--grpc-server-key={key}"),
    )  # fmt: skip
    server.start()
    try:
        yield server, cert
    finally:
        server.stop()


async def test_grpc_over_tls_connects_with_the_servers_ca_and_not_without(
    tls_triton: tuple[TritonServer, Path],
) -> None:
    server, cert = tls_triton
    trusted = TritonClient(
        server.grpc_url, item_model="fusion", user_model="fusion",
        transport=TritonTransport(protocol="grpc", tls=True, cafile=cert),
    )  # fmt: skip
    untrusted = TritonClient(
        server.grpc_url, item_model="fusion", user_model="fusion", timeout_s=3.0,
        transport=TritonTransport(protocol="grpc", tls=True),
    )  # fmt: skip
    try:
        await trusted.probe()
        assert (await trusted.model_version()).startswith("fusion:")
        with pytest.raises(TritonUnavailable):
            await untrusted.probe()
    finally:
        await trusted.close()
        await untrusted.close()
