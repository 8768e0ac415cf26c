"""The items micro-batch against the real tritonserver and an embedded store."""

from __future__ import annotations

import orjson
import pytest

from worker.context import Context
from worker.ingest import ingest_batch
from worker.records import RawMessage

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
