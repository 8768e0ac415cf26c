"""What the local service launchers share: free ports, log tails, and a child process that
is always stopped (terminate, wait, then kill its whole process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all sockets held open until all are picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    return free_ports(1)[0]


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a service log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """Base of the launchers: spawn with output to a log, wait for readiness while watching
    for an early exit, and stop from `finally` or as a context manager."""

    name = "process"
    error: type[RuntimeError] = RuntimeError

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        raise NotImplementedError

    def failure_text(self) -> str:
        return log_tail(self.log_path)

    def problem(self) -> str | None:
        """Why the process is not running (it exited), or None while it runs."""
        if self._proc is None or self._proc.poll() is None:
            return None
        return f"{self.name} exited with code {self._proc.returncode}:\n{self.failure_text()}"

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        if self._proc is not None:
            raise self.error(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches only the parent, which
                # then stops the child in order.
                start_new_session=True,
            )

    def _wait_until(
        self, ready: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.05
    ) -> None:
        """Poll `ready` until true; raise (after stopping) on exit or timeout."""
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise self.error(
                        f"{self.name} exited with code {self._proc.returncode} while starting "
                        f"(log {self.log_path}):\n{self.failure_text()}"
                    )
                if ready():
                    return
                if time.monotonic() > deadline:
                    raise self.error(
                        f"{self.name} not ready after {timeout_s:.0f} s "
                        f"(log {self.log_path}):\n{self.failure_text()}"
                    )
                time.sleep(interval_s)
        except BaseException:
            self.stop()
            raise

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Signal the process (e.g. SIGKILL, SIGTERM) without waiting for it; `group`: its
        whole process group (a server with child processes dying at once, as its container
        would), so no child outlives it."""
        if self._proc is None:
            return
        if group:
            os.killpg(self._proc.pid, sig)  # started in a session of its own: pgid = pid
        else:
            self._proc.send_signal(sig)

    def wait_exit(self, timeout_s: float) -> int | None:
        """Wait for the process to exit (None if it is still running after `timeout_s`);
        once it exited, the object may be started again."""
        if self._proc is None:
            return None
        try:
            code = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._proc = None
        return code

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """Terminate, wait, then kill the whole process group; returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        return proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
