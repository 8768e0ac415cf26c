"""Fetches media given by URL (image_url, audio_url) before an item batch is embedded.

Anyone who can produce to `items` chooses these URLs, so the fetcher is safe by default:

- only http(s), no credentials in the URL, at most `max_redirects` redirects, each hop
  checked like the first;
- a host must resolve to public addresses only: loopback, private, link-local (cloud
  metadata), multicast and reserved addresses are refused unless allow-listed
  (MEDIA_ALLOW_HOSTS, MEDIA_ALLOW_NETWORKS). The check runs on the name before the request
  and again inside the connector on the addresses it actually connects to, so a DNS answer
  that changes in between (rebinding) cannot reach a refused address;
- bodies are streamed up to the size limit with a per-read timeout, and each URL has a total
  deadline, so a slow or endless server costs one item, not the items path;
- reasons name what was refused or failed and the host, never the path, the query or what a
  refused address would have answered (a dead letter must not work as a port scanner).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from worker.items import MAX_MEDIA_BYTES
from worker.settings import Settings

_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024


class MediaFetchError(RuntimeError):
    """A media URL could not be fetched; the item goes to the DLQ with this text."""


class AddressPolicy:
    """Which hosts and addresses the fetcher may connect to."""

    def __init__(self, allow_hosts: Sequence[str] = (), allow_networks: Sequence[str] = ()):
        self.allow_hosts = {host.lower().rstrip(".") for host in allow_hosts}
        self.allow_networks = [ipaddress.ip_network(net, strict=False) for net in allow_networks]

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allow_hosts

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allow_networks):
            return True
        return ip.is_global and not ip.is_multicast


class _PolicyResolver(AbstractResolver):
    """The connector's resolver: only allowed addresses are ever connected to."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._policy.host_allowed(host):
            return found
        kept = [r for r in found if self._policy.address_allowed(r["host"])]
        if not kept:
            raise OSError(f"{host} resolves to no allowed address")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class MediaFetcher:
    def __init__(
        self,
        *,
        policy: AddressPolicy | None = None,
        timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        max_redirects: int = 3,
        max_concurrency: int = 32,
        max_per_host: int = 4,
        max_bytes: int = MAX_MEDIA_BYTES,
    ) -> None:
        self.policy = policy or AddressPolicy()
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(timeout_s, 5.0), sock_read=read_timeout_s
        )
        self._limit = asyncio.Semaphore(max_concurrency)
        self._per_host = max_per_host
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaFetcher:
        return cls(
            policy=AddressPolicy(settings.media_allow_hosts, settings.media_allow_networks),
            timeout_s=settings.media_timeout_s,
            read_timeout_s=settings.media_read_timeout_s,
            max_redirects=settings.media_max_redirects,
        )

    async def fetch_many(self, urls: list[str]) -> list[bytes | MediaFetchError]:
        """Fetch every URL concurrently; each slot holds the bytes or the error."""
        if not urls:
            return []
        return list(await asyncio.gather(*(self._fetch(url) for url in urls)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PolicyResolver(self.policy), limit_per_host=self._per_host
            )
            # No cookies, no proxies from the environment, no auth: every request stands alone.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def _fetch(self, url: str) -> bytes | MediaFetchError:
        async with self._limit:
            try:
                return await asyncio.wait_for(self._follow(url), self.timeout_s)
            except TimeoutError:
                return MediaFetchError(
                    f"media from {_host(url)}: no complete answer within {self.timeout_s:g} s"
                )
            except MediaFetchError as exc:
                return exc

    async def _follow(self, url: str) -> bytes:
        for _ in range(self.max_redirects + 1):
            await self.check(url)
            try:
                async with self._client().get(url, allow_redirects=False) as resp:
                    if resp.status in _REDIRECTS and resp.headers.get("Location"):
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if resp.status != 200:
                        raise MediaFetchError(f"media from {_host(url)}: HTTP status {resp.status}")
                    return await self._read(resp, url)
            except (aiohttp.ClientError, OSError) as exc:
                raise MediaFetchError(
                    f"media from {_host(url)}: could not be fetched ({type(exc).__name__})"
                ) from None
        raise MediaFetchError(f"media from {_host(url)}: more than {self.max_redirects} redirects")

    async def check(self, url: str) -> None:
        """Refuse a URL the policy forbids, before any connection is made to it."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise MediaFetchError("media URL refused: it does not parse") from None
        if parts.scheme not in ("http", "https") or not host:
            raise MediaFetchError("media URL refused: only http(s) URLs with a host are fetched")
        if parts.username is not None or parts.password is not None:
            raise MediaFetchError(f"media URL refused: credentials in the URL ({host})")
        if self.policy.host_allowed(host):
            return
        try:
            addresses = [ipaddress.ip_address(host).compressed]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port or 443, type=socket.SOCK_STREAM
                )
            except OSError:
                raise MediaFetchError(f"media from {host}: the name does not resolve") from None
            addresses = [str(info[4][0]) for info in infos]
        if not any(self.policy.address_allowed(a) for a in addresses):
            raise MediaFetchError(
                f"media URL refused: {host} is not a public address (loopback, private, "
                "link-local or reserved; see MEDIA_ALLOW_HOSTS / MEDIA_ALLOW_NETWORKS)"
            )

    async def _read(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise MediaFetchError(f"media from {_host(url)} is larger than {self.max_bytes} bytes")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise MediaFetchError(
                    f"media from {_host(url)} is larger than {self.max_bytes} bytes"
                )
        if not body:
            raise MediaFetchError(f"media from {_host(url)}: empty body")
        return bytes(body)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
