"""The items micro-batch against the real tritonserver and an embedded store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from worker.ingest import ingest_batch
from worker.media import MediaFetcher
from worker.records import RawMessage
from worker.store import EdgeVectorStore
from worker.triton import TritonClient

pytestmark = pytest.mark.integration


def _msg(key: str, value: object) -> RawMessage:
    raw = None if value is None else orjson.dumps(value)
    return RawMessage("items", 0, 0, key.encode(), raw, 1700000000.0)


async def test_the_result_names_the_items_written_last_write_per_id_winning(
    triton_client: TritonClient, tmp_path: Path
) -> None:
    messages = [
        _msg("a", {"item_id": "a", "title": "A film about the sea"}),
        _msg("b", {"item_id": "b", "title": "B"}),
        _msg("b", None),  # tombstone after the upsert: b is deleted, not written
        _msg("c", {"item_id": "c"}),  # no content: dead-lettered
        _msg("d", None),
        _msg("d", {"item_id": "d", "text": "back again"}),
    ]
    store = EdgeVectorStore(tmp_path / "edge", triton_client.dim)
    await store.open()
    media = MediaFetcher()
    try:
        result = await ingest_batch(
            messages, triton=triton_client, store=store, media=media, model_version="test"
        )
        assert result.upserted_ids == ["a", "d"] and result.indexed == 2
        assert result.deleted == 1 and [d.source.key for d in result.dead_letters] == [b"c"]
        assert sorted(await store.get_items(["a", "b", "c", "d"])) == ["a", "d"]
    finally:
        await store.close()
        await media.close()
