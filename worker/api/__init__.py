"""The worker's HTTP port: the read API, health, readiness and /metrics (aiohttp, on the
worker's own event loop)."""

from worker.api.app import ApiServer, bind_socket

__all__ = ["ApiServer", "bind_socket"]
