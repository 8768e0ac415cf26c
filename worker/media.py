"""Fetches media given by URL (image_url, audio_url) before an item batch is embedded."""

from __future__ import annotations

import asyncio

import aiohttp

from worker.items import MAX_MEDIA_BYTES


class MediaFetchError(RuntimeError):
    """A media URL could not be fetched; the item goes to the DLQ with this text."""


class MediaFetcher:
    def __init__(self, *, timeout_s: float = 5.0, max_concurrency: int = 16) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def fetch_many(self, urls: list[str]) -> list[bytes | MediaFetchError]:
        """Fetch every URL concurrently; each slot holds the bytes or the error."""
        if not urls:
            return []
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return list(await asyncio.gather(*(self._fetch(url) for url in urls)))

    async def _fetch(self, url: str) -> bytes | MediaFetchError:
        assert self._session is not None
        async with self._limit:
            try:
                async with self._session.get(url) as resp:
                    if resp.status != 200:
                        return MediaFetchError(f"GET {url} answered HTTP {resp.status}")
                    body = await resp.content.read(MAX_MEDIA_BYTES + 1)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return MediaFetchError(f"GET {url} failed: {exc!r}")
        if len(body) > MAX_MEDIA_BYTES:
            return MediaFetchError(f"GET {url} is larger than {MAX_MEDIA_BYTES} bytes")
        if not body:
            return MediaFetchError(f"GET {url} returned an empty body")
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
