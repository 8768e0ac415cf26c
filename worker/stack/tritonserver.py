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
import site
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

from worker.stack.process import HOST, ManagedProcess, free_ports

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
    # The stub's embedded Python takes its prefix from the `python3` on PATH; PYTHONPATH alone
    # does not make the venv's packages importable there, so a venv that is used but not
    # activated (`.venv/bin/python -m pytest`, as `make test` runs) needs its bin/ first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # Bytecode written into a model's version directory changes it, and a server polling its
    # repository would then reload the model.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


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


# A new version directory (`make train`, `models.export`) is served within seconds, under a
# running worker; the worker re-reads the served versions on its own timer.
POLL_REPOSITORY = ("--model-control-mode=poll", "--repository-poll-secs=5")


class TritonServer(ManagedProcess):
    """A tritonserver on free loopback ports; a context manager that always cleans up.

    `start()` returns once the server and every model of the repository report ready.
    """

    name = "tritonserver"
    error = TritonServerError

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
        super().__init__(self.work_dir / "tritonserver.log")
        self.startup_s: float | None = None  # start() to ready, once ready

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

    def failure_text(self) -> str:
        return failure_report(self.log_path)

    def start(self) -> TritonServer:
        models = repository_models(self.model_repository)
        if not models:
            raise TritonServerError(f"no */config.pbtxt under {self.model_repository}")
        started = time.monotonic()
        backend_dir = prepare_backend_dir(self.work_dir)
        if not self.http_port:  # a restart keeps its ports: clients reconnect to the same URL
            self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self._spawn(self.command(backend_dir), env=server_env())
        pending = ["v2/health/ready", *(f"v2/models/{name}/ready" for name in models)]

        def ready() -> bool:
            # Drop each endpoint once it answers 200; models never go unready on their own.
            pending[:] = [path for path in pending if not self._ok(path)]
            return not pending

        self._wait_until(ready, timeout_s=self.start_timeout_s, interval_s=0.1)
        self.startup_s = time.monotonic() - started
        return self

    def _ok(self, path: str) -> bool:
        try:
            with _DIRECT.open(f"http://{self.http_url}/{path}", timeout=1.0) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False
