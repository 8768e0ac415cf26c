"""Local tritonserver: the binary shipped in the `nvidia-pytriton` wheel (Python backend only).

Modelled on Merlin Systems' `run_triton_server` test fixture: free loopback ports, the
server's output to a log file, readiness polled over HTTP (the server AND every model in
the repository) while watching the process for an early exit, and a `stop()` that always
cleans up. The Python backend's stub runs this interpreter's site-packages, so the
repository's model.py files import numpy / onnxruntime / tokenizers / Pillow from the
current virtualenv.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
# Readiness probes go straight to loopback, whatever HTTP_PROXY says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TritonServerError(RuntimeError):
    """tritonserver could not be found, started or made ready; the message has its log."""


def pytriton_dir() -> Path:
    """`<site-packages>/pytriton`, located without importing it (its import is slow)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError("nvidia-pytriton is not installed: no tritonserver binary")
    return Path(next(iter(spec.submodule_search_locations)))


def find_tritonserver() -> Path:
    binary = pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise TritonServerError(f"no tritonserver binary at {binary}")
    return binary


def prepare_backend_dir(work_dir: Path) -> Path:
    """`<work_dir>/backends/python`: the wheel's Python backend plus the stub built for this
    interpreter's Python version. Reused when already complete."""
    source = pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"the pytriton wheel has no Python backend stub for {version}")
    backends = work_dir / "backends"
    target = backends / "python"
    wanted = [path for path in (source / "backends" / "python").iterdir() if path.is_file()]
    wanted.append(stub)
    target.mkdir(parents=True, exist_ok=True)
    for path in wanted:
        copy = target / path.name
        if not copy.is_file() or copy.stat().st_size != path.stat().st_size:
            shutil.copy2(path, copy)
    return backends


def server_env() -> dict[str, str]:
    """Environment for tritonserver: the wheel's bundled shared libraries, this interpreter's
    libpython (the stub links against libpython3.X) and its site-packages."""
    env = os.environ.copy()
    libs = [str(pytriton_dir().parent / "nvidia_pytriton.libs")]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and sysconfig.get_config_var("LDLIBRARY") and Path(libdir).is_dir():
        libs.append(libdir)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(
        os.pathsep
    )
    paths = [*site.getsitepackages(), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths).rstrip(os.pathsep)
    return env


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all sockets held open until all are picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def failure_report(log_path: Path, tail: int = 10) -> str:
    """The error lines of a tritonserver log (model load failures come early, before the
    long option table) followed by its last lines."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log_path})"
    errors = [line for line in lines if re.match(r"E\d{4} ", line) or "UNAVAILABLE" in line]
    return "\n".join([*errors[-20:], "--- log tail ---", *lines[-tail:]])


def repository_models(model_repository: Path) -> list[str]:
    """The models tritonserver will load: directories holding a config.pbtxt."""
    return sorted(path.parent.name for path in model_repository.glob("*/config.pbtxt"))


class TritonServer:
    """A tritonserver on free loopback ports; a context manager that always cleans up.

    `start()` returns once the server and every model of the repository report ready.
    """

    def __init__(
        self,
        model_repository: Path,
        work_dir: Path,
        *,
        start_timeout_s: float = 180.0,
        log_verbose: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.start_timeout_s = start_timeout_s
        self.log_verbose = log_verbose
        self.extra_args = extra_args
        self.http_port, self.grpc_port, self.metrics_port = 0, 0, 0
        self.log_path = self.work_dir / "tritonserver.log"
        self.startup_s: float | None = None  # start() to ready, once ready
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """The HTTP endpoint as "host:port", the form tritonclient.http expects."""
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self, backend_dir: Path) -> list[str]:
        return [
            str(find_tritonserver()),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={HOST}",
            f"--http-port={self.http_port}",
            f"--grpc-address={HOST}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={HOST}",
            f"--metrics-port={self.metrics_port}",
            f"--log-verbose={self.log_verbose}",
            # Every config.pbtxt is complete; a missing field should fail, not be guessed.
            "--disable-auto-complete-config",
            "--exit-timeout-secs=10",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        if self._proc is not None:
            raise TritonServerError("tritonserver already started")
        models = repository_models(self.model_repository)
        if not models:
            raise TritonServerError(f"no */config.pbtxt under {self.model_repository}")
        started = time.monotonic()
        backend_dir = prepare_backend_dir(self.work_dir)
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(backend_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_env(),
                # Its own session: a Ctrl-C in the terminal reaches only us, and stop()
                # then shuts the server down in order.
                start_new_session=True,
            )
        try:
            self._wait_ready(models, deadline=started + self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _wait_ready(self, models: list[str], deadline: float) -> None:
        assert self._proc is not None
        endpoints = ["v2/health/ready", *(f"v2/models/{name}/ready" for name in models)]
        while True:
            if self._proc.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {self._proc.returncode} while starting "
                    f"(log {self.log_path}):\n{failure_report(self.log_path)}"
                )
            # Drop each endpoint once it answers 200; models never go unready on their own.
            endpoints = [path for path in endpoints if not self._ok(path)]
            if not endpoints:
                return
            if time.monotonic() > deadline:
                raise TritonServerError(
                    f"tritonserver not ready after {self.start_timeout_s:.0f} s (waiting for "
                    f"{', '.join(endpoints)}; log {self.log_path}):\n"
                    f"{failure_report(self.log_path)}"
                )
            time.sleep(0.1)

    def _ok(self, path: str) -> bool:
        try:
            with _DIRECT.open(f"http://{self.http_url}/{path}", timeout=1.0) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # The whole process group: the server and its Python backend stubs.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
