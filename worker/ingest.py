"""The items path for one micro-batch: parse -> fetch media -> Triton item_embedder -> Qdrant.

One Triton call and at most one upsert and one delete per batch. Bad items become dead
letters with a reason; the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from worker.context import Context
from worker.errors import InfrastructureError
from worker.fanout import fan_out
from worker.item_rules import RuleBook
from worker.items import ItemDelete, ItemUpsert, item_text, parse_item
from worker.media import MediaFetcher, MediaFetchError
from worker.records import BatchResult, DeadLetter, RawMessage
from worker.store import ItemRecord, UserState
from worker.triton import ItemContent
from worker.validation import InvalidMessage

log = logging.getLogger(__name__)


async def handle_items(
    messages: Sequence[RawMessage], ctx: Context, carried: dict[str, UserState] | None = None
) -> BatchResult:
    """The items pipeline's batch handler: ingest, then push the new items to the users
    nearest to them. Item writes are idempotent (point ids from item ids), so they happen
    here; pushes and push limits wait for the checkpoint like every output."""
    result = await ingest_batch(messages, ctx)
    started = time.perf_counter()
    try:
        outputs, pushes, answered = await fan_out(result.upserted_ids, ctx, now=ctx.clock())
    except InfrastructureError:
        raise
    except Exception:
        # Pushes are extras on items already indexed: a fan-out bug must not dead-letter
        # good items or stall the path. Logged, and the batch is answered without them.
        log.exception("new-item fan-out failed; the batch's items are indexed without pushes")
        outputs, pushes, answered = [], [], []
    result.outputs += outputs
    result.answers += answered
    result.signals.pushes += pushes
    result.stage_seconds["fanout"] = time.perf_counter() - started
    return result


async def ingest_batch(messages: Sequence[RawMessage], ctx: Context) -> BatchResult:
    """parse -> fetch media -> one Triton call -> one upsert (and one delete)."""
    triton, store, media = ctx.triton, ctx.store, ctx.media
    result = BatchResult()
    started = time.perf_counter()

    # Last write per item wins, in offset order, so a tombstone after an upsert deletes.
    latest: dict[str, tuple[RawMessage, ItemUpsert | ItemDelete]] = {}
    for msg in messages:
        try:
            op = parse_item(msg.key, msg.value, received_at=msg.timestamp)
        except InvalidMessage as exc:
            result.dead_letters.append(DeadLetter(msg, "decode", str(exc)))
            continue
        latest.pop(op.item_id, None)
        latest[op.item_id] = (msg, op)
    upserts = [(m, op) for m, op in latest.values() if isinstance(op, ItemUpsert)]
    deletes = [op.item_id for _, op in latest.values() if isinstance(op, ItemDelete)]
    t_decoded = time.perf_counter()
    result.stage_seconds["decode"] = t_decoded - started

    upserts = await resolve_media(upserts, media, result)
    t_media = time.perf_counter()
    if t_media - t_decoded > 1e-4:
        result.stage_seconds["media"] = t_media - t_decoded

    records: list[ItemRecord] = []
    if upserts:
        contents = [ItemContent(item_text(op), op.image, op.audio) for _, op in upserts]
        vectors, errors, space = await triton.embed_items_in_space(contents)
        for (msg, op), vector, error in zip(upserts, vectors, errors, strict=True):
            if error is not None:
                result.dead_letters.append(DeadLetter(msg, "embed", error))
                continue
            records.append(item_record(op, vector, space, ctx.rules))
    t_embedded = time.perf_counter()
    result.stage_seconds["triton"] = t_embedded - t_media

    if records:
        await store.upsert_items(records)
    if deletes:
        await store.delete_items(deletes)
    result.indexed, result.deleted = len(records), len(deletes)
    result.upserted_ids = [record.item_id for record in records]
    result.items_written, result.items_deleted = records, deletes
    result.stage_seconds["qdrant"] = time.perf_counter() - t_embedded
    return result


def item_record(op: ItemUpsert, vector: np.ndarray, space: str, rules: RuleBook) -> ItemRecord:
    """What the store keeps of an item: its vector (of item space `space`), the fields the
    ranking and filters use, and its business rules (its own, and those in effect)."""
    return ItemRecord(
        item_id=op.item_id,
        vector=vector,
        title=op.title,
        category=op.category,
        tags=op.tags,
        created_at=op.created_at,
        popularity=op.popularity,
        model_version=space,
        rules=rules.effective(op.item_id, op.rules),
        own_rules=op.rules,
    )


async def resolve_media(
    upserts: list[tuple[RawMessage, ItemUpsert]], media: MediaFetcher, result: BatchResult
) -> list[tuple[RawMessage, ItemUpsert]]:
    """Replace image_url/audio_url by fetched bytes; failures become dead letters."""
    wanted = [
        (i, field, url)
        for i, (_, op) in enumerate(upserts)
        for field, url in (("image", op.image_url), ("audio", op.audio_url))
        if url
    ]
    if not wanted:
        return upserts
    fetched = await media.fetch_many([url for _, _, url in wanted])
    resolved = list(upserts)
    failed: set[int] = set()
    for (i, field, _), body in zip(wanted, fetched, strict=True):
        if isinstance(body, MediaFetchError):
            if i not in failed:
                result.dead_letters.append(DeadLetter(upserts[i][0], "media", str(body)))
            failed.add(i)
            continue
        msg, op = resolved[i]
        resolved[i] = (
            msg,
            replace(op, image=body) if field == "image" else replace(op, audio=body),
        )
    return [pair for i, pair in enumerate(resolved) if i not in failed]
