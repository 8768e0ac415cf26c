"""The user-events micro-batch against the real tritonserver and an embedded store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from worker.covisitation import CoVisitation
from worker.ingest import ingest_batch
from worker.media import MediaFetcher
from worker.recommend import recommend_batch
from worker.records import RawMessage
from worker.settings import load_settings
from worker.store import EdgeVectorStore
from worker.trending import Trending
from worker.triton import TritonClient

pytestmark = pytest.mark.integration

TITLES = [
    "A film about the sea and sailors",
    "A film about mountains and climbers",
    "A cooking show about Italian pasta",
    "A documentary about deep space",
    "A football final with a late goal",
    "A comedy about a wedding",
]


def _event(number: int, user: str, item: str) -> RawMessage:
    value = {
        "event_id": f"e{number}",
        "user_id": user,
        "item_id": item,
        "type": "click",
        "ts": 1.7e9 + number,
    }
    return RawMessage("user-events", 0, number, user.encode(), orjson.dumps(value), 1.7e9)


async def test_every_event_of_a_user_in_one_batch_counts_when_answers_are_not_coalesced(
    triton_client: TritonClient, tmp_path: Path
) -> None:
    store = EdgeVectorStore(tmp_path / "edge", triton_client.dim)
    await store.open()
    media = MediaFetcher()
    settings = load_settings(coalesce_events=False, recommendations_k=10)
    try:
        items = [
            RawMessage(
                "items",
                0,
                n,
                f"i{n}".encode(),
                orjson.dumps({"item_id": f"i{n}", "title": t}),
                1.7e9,
            )
            for n, t in enumerate(TITLES)
        ]
        await ingest_batch(items, triton=triton_client, store=store, media=media, model_version="")
        result = await recommend_batch(
            [_event(1, "u", "i0"), _event(2, "u", "i1"), _event(3, "u", "i2")],
            triton=triton_client,
            store=store,
            settings=settings,
            model_version="test",
            trending=Trending(half_life_s=3600.0, capacity=100),
            covisitation=CoVisitation(neighbours=10),
        )
        await asyncio.gather(*result.pending_saves)
        assert not result.dead_letters
        answers = [orjson.loads(out.value) for out in result.outputs]
        assert [a["event_ids"] for a in answers] == [["e1"], ["e2"], ["e3"]]
        listed = [{i["item_id"] for i in a["items"]} for a in answers]
        # Each answer excludes everything consumed so far, not just the latest event.
        assert not listed[1] & {"i0", "i1"} and not listed[2] & {"i0", "i1", "i2"}
        saved = (await store.get_users(["u"]))["u"]
        assert [i.item_id for i in saved.history] == ["i0", "i1", "i2"]
    finally:
        await store.close()
        await media.close()
