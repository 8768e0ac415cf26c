"""Local services for development, demos, tests and load runs.

`LocalStack` starts only what the settings leave unset: a Tansu broker when
KAFKA_BOOTSTRAP_SERVERS is empty, a tritonserver when TRITON_URL is empty. Qdrant needs no
process: unset QDRANT_URL means embedded Qdrant Edge inside the worker.
"""

from __future__ import annotations

import logging
from types import TracebackType

from worker.settings import Settings
from worker.stack.broker import BrokerError, LocalBroker
from worker.stack.tritonserver import POLL_REPOSITORY, TritonServer

__all__ = ["BrokerError", "LocalBroker", "LocalStack", "TritonServer"]

log = logging.getLogger(__name__)


class LocalStack:
    def __init__(self, settings: Settings, *, force: bool = False) -> None:
        """`force` starts both services even when the settings name remote ones."""
        self.settings = settings
        self.force = force
        self.broker: LocalBroker | None = None
        self.triton: TritonServer | None = None

    def start(self) -> Settings:
        """Start what is missing; return settings that point at every service."""
        s = self.settings
        updates: dict[str, object] = {}
        try:
            if self.force or not s.kafka_bootstrap_servers:
                self.broker = LocalBroker(s.stack_dir / "logs").start()
                updates["kafka_bootstrap_servers"] = self.broker.bootstrap_servers
                log.info("local broker at %s", self.broker.bootstrap_servers)
            if self.force or not s.triton_url:
                self.triton = TritonServer(
                    s.triton_repo, s.stack_dir / "triton", extra_args=POLL_REPOSITORY
                )
                self.triton.start()
                url = self.triton.grpc_url if s.triton_protocol == "grpc" else self.triton.http_url
                updates["triton_url"] = url
                log.info("local tritonserver at %s (%s)", url, s.triton_protocol)
        except BaseException:
            self.stop()
            raise
        return s.model_copy(update=updates)

    def stop(self) -> None:
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
