"""The media fetcher against loopback servers: a canary that must never be reached, an
allow-listed server that redirects to it, streamed bodies, slow and oversize answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from worker.media import AddressPolicy, MediaFetcher, MediaFetchError
from worker.stack.process import free_port

ALLOWED = "127.0.0.2"  # a second loopback address, allow-listed as if it were a CDN


@dataclass
class Server:
    host: str
    port: int
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


async def _serve(host: str, routes: dict[str, object]) -> tuple[Server, web.AppRunner]:
    server = Server(host, free_port())

    @web.middleware
    async def record(request: web.Request, handler: object) -> web.StreamResponse:
        server.hits.append(request.path_qs)
        return await handler(request)  # type: ignore[operator]

    app = web.Application(middlewares=[record])
    for path, handler in routes.items():
        app.router.add_get(path, handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, server.port).start()
    return server, runner


@pytest.fixture
async def canary() -> AsyncIterator[Server]:
    async def anything(request: web.Request) -> web.Response:
        return web.Response(body=b"secret internal answer")

    server, runner = await _serve("127.0.0.1", {"/{tail:.*}": anything})
    yield server
    await runner.cleanup()


@pytest.fixture
async def cdn(canary: Server) -> AsyncIterator[Server]:
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB

    async def to_canary(request: web.Request) -> web.Response:
        raise web.HTTPFound(canary.url("/latest/meta-data"))

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for start in range(0, len(big), 100_000):
            await resp.write(big[start : start + 100_000])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"x")
        await asyncio.sleep(5)
        return resp

    server, runner = await _serve(
        ALLOWED, {"/redirect": to_canary, "/big.png": chunked, "/slow": slow}
    )
    server.big = big  # type: ignore[attr-defined]
    yield server
    await runner.cleanup()


def _fetcher(**kwargs: object) -> MediaFetcher:
    return MediaFetcher(policy=AddressPolicy(allow_networks=[f"{ALLOWED}/32"]), **kwargs)  # type: ignore[arg-type]


async def test_loopback_and_redirects_to_it_never_reach_the_canary(
    canary: Server, cdn: Server
) -> None:
    port = canary.port
    urls = [
        canary.url("/metrics"),
        f"http://localhost:{port}/metrics",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://0.0.0.0:{port}/",
        cdn.url("/redirect"),
        f"http://user:pass@{ALLOWED}:{cdn.port}/big.png",
    ]
    fetcher = _fetcher()
    try:
        results = await fetcher.fetch_many(urls)
    finally:
        await fetcher.close()
    assert all(isinstance(r, MediaFetchError) for r in results), results
    assert canary.hits == []
    assert cdn.hits == ["/redirect"]  # the credentials URL was refused before any request
    reasons = [str(r) for r in results]
    assert all("refused" in reason for reason in reasons)
    assert not any("metrics" in reason or "meta-data" in reason for reason in reasons)


async def test_a_large_body_is_streamed_whole(cdn: Server) -> None:
    fetcher = _fetcher()
    try:
        [body] = await fetcher.fetch_many([cdn.url("/big.png")])
    finally:
        await fetcher.close()
    assert body == cdn.big  # type: ignore[attr-defined]


async def test_oversize_and_stalled_bodies_fail_within_their_limits(cdn: Server) -> None:
    fetcher = _fetcher(max_bytes=1_000_000, read_timeout_s=0.5, timeout_s=2.0)
    started = asyncio.get_running_loop().time()
    try:
        big, slow = await fetcher.fetch_many([cdn.url("/big.png"), cdn.url("/slow")])
    finally:
        await fetcher.close()
    assert isinstance(big, MediaFetchError) and "larger than" in str(big)
    assert isinstance(slow, MediaFetchError)
    assert asyncio.get_running_loop().time() - started < 3.0


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_only_public_addresses_are_allowed_by_default(address: str, allowed: bool) -> None:
    assert AddressPolicy().address_allowed(address) is allowed


def test_allow_lists_open_named_hosts_and_networks() -> None:
    policy = AddressPolicy(allow_hosts=["CDN.internal."], allow_networks=["10.20.0.0/16"])
    assert policy.host_allowed("cdn.internal") and not policy.host_allowed("other.internal")
    assert policy.address_allowed("10.20.3.4") and not policy.address_allowed("10.21.0.1")
