"""The HTTP routes (aiohttp): one port for the read API, health, readiness and /metrics.

Handlers answer JSON; a bad parameter is a 400 and an unknown item a 404, each with
{"error": "..."}; a dependency that cannot answer is a 503. The worker binds the port at
start (a busy port stops it with one line) and serves before it is ready: /healthz answers
at once, /readyz and the reads say 503 until the worker has started.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.api.openapi import openapi_document
from worker.api.query import BadRequest, path_id, read_query
from worker.api.reads import Reads, UnknownItem
from worker.context import Context
from worker.errors import InfrastructureError
from worker.health import Health
from worker.metrics import Metrics

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound now (port 0: a free one); OSError when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ApiServer:
    def __init__(self, ctx: Context, health: Health, metrics: Metrics) -> None:
        self.reads = Reads(ctx)
        self.health = health
        self.metrics = metrics
        self._runner: web.AppRunner | None = None
        self._document = orjson.dumps(openapi_document(ctx.settings.recommendations_k))
        self.app = web.Application(middlewares=[self._errors])
        self.app.add_routes(
            [
                web.get("/recommendations/{user_id}", self._recommendations),
                web.get("/items/{item_id}/similar", self._similar),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/metrics", self._metrics),
                web.get("/openapi.json", self._openapi),
            ]
        )

    async def start(self, sock: socket.socket) -> None:
        # No access log: it would print user ids in request paths at INFO level.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        try:
            return await handler(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        except UnknownItem as exc:
            return _error(404, f"unknown item {str(exc)[:64]!r}")
        except InfrastructureError as exc:
            return _error(503, f"{exc.dependency} cannot answer: {exc}")
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason)
        except Exception:
            # Logged without the request's path: it may hold a user id.
            log.exception("%s failed", name)
            return _error(500, "internal error (see the worker's log)")
        finally:
            self.metrics.api_seconds.labels(name).observe(time.perf_counter() - started)

    def _check_started(self) -> None:
        if not self.health.is_started:
            raise web.HTTPServiceUnavailable(reason="the worker is starting")

    async def _recommendations(self, request: web.Request) -> web.Response:
        user_id = path_id(request.match_info["user_id"], "user_id")
        query, fresh = read_query(request.query)
        self._check_started()
        return web.json_response(
            await self.reads.recommendations(user_id, query, fresh=fresh), dumps=json_dumps
        )

    async def _similar(self, request: web.Request) -> web.Response:
        item_id = path_id(request.match_info["item_id"], "item_id")
        query, _ = read_query(request.query, allowed={"k", "categories", "exclude"})
        self._check_started()
        return web.json_response(await self.reads.similar(item_id, query), dumps=json_dumps)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        health = self.health
        body = {
            "ready": health.ready,
            "started": health.is_started,
            "waiting_for_partitions": sorted(health.waiting),
            "failing": health.failing,
        }
        return web.json_response(body, status=200 if health.ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._document, content_type="application/json")


def json_dumps(doc: object) -> str:
    return orjson.dumps(doc).decode()
