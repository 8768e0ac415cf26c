"""The items micro-batch against the real tritonserver and an embedded store."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from aiohttp import web
from PIL import Image

from worker.context import Context
from worker.ingest import ingest_batch
from worker.media import AddressPolicy, MediaFetcher
from worker.records import RawMessage
from worker.stack.process import free_port

pytestmark = pytest.mark.integration


def _msg(key: str, value: object) -> RawMessage:
    raw = None if value is None else orjson.dumps(value)
    return RawMessage("items", 0, 0, key.encode(), raw, 1700000000.0)


async def test_the_result_names_the_items_written_last_write_per_id_winning(
    edge_context: Context,
) -> None:
    messages = [
        _msg("a", {"item_id": "a", "title": "A film about the sea"}),
        _msg("b", {"item_id": "b", "title": "B"}),
        _msg("b", None),  # tombstone after the upsert: b is deleted, not written
        _msg("c", {"item_id": "c"}),  # no content: dead-lettered
        _msg("d", None),
        _msg("d", {"item_id": "d", "text": "back again"}),
    ]
    result = await ingest_batch(messages, edge_context)
    assert result.upserted_ids == ["a", "d"] and result.indexed == 2
    assert result.deleted == 1 and [d.source.key for d in result.dead_letters] == [b"c"]
    assert sorted(await edge_context.store.get_items(["a", "b", "c", "d"])) == ["a", "d"]


async def test_a_ten_megabyte_image_by_url_is_fetched_whole_and_indexed(
    edge_context: Context,
) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (2900, 3600, 3), dtype=np.uint8)).save(
        buffer, format="JPEG", quality=95
    )
    photo = buffer.getvalue()
    assert len(photo) >= 10_000_000

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=photo, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/photo.jpg", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    # A second loopback address, allow-listed like a trusted internal CDN would be.
    await web.TCPSite(runner, "127.0.0.2", port).start()
    edge_context.media = MediaFetcher(policy=AddressPolicy(allow_networks=["127.0.0.2/32"]))
    try:
        url = f"http://127.0.0.2:{port}/photo.jpg"
        result = await ingest_batch([_msg("p", {"item_id": "p", "image_url": url})], edge_context)
    finally:
        await edge_context.media.close()
        await runner.cleanup()
    assert not result.dead_letters and result.upserted_ids == ["p"]
