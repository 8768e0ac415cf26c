"""The user-events micro-batch against the real tritonserver and an embedded store."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from worker.context import Context
from worker.ingest import ingest_batch
from worker.recommend import recommend_batch
from worker.records import RawMessage
from worker.settings import load_settings
from worker.store import EdgeVectorStore, Interaction, UserState

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
    edge_context: Context,
) -> None:
    ctx = edge_context
    ctx.settings = load_settings(coalesce_events=False, recommendations_k=10)
    items = [
        RawMessage(
            "items", 0, n, f"i{n}".encode(), orjson.dumps({"item_id": f"i{n}", "title": t}), 1.7e9
        )
        for n, t in enumerate(TITLES)
    ]
    await ingest_batch(items, ctx)
    result = await recommend_batch(
        [_event(1, "u", "i0"), _event(2, "u", "i1"), _event(3, "u", "i2")], ctx
    )
    assert not result.dead_letters
    answers = [orjson.loads(out.value) for out in result.outputs]
    assert [a["event_ids"] for a in answers] == [["e1"], ["e2"], ["e3"]]
    listed = [{i["item_id"] for i in a["items"]} for a in answers]
    # Each answer excludes everything consumed so far, not just the latest event.
    assert not listed[1] & {"i0", "i1"} and not listed[2] & {"i0", "i1", "i2"}
    # Nothing is written by the handler: the state to save is in the outcome.
    assert await ctx.store.get_users(["u"]) == {}
    [state] = result.user_states
    assert [i.item_id for i in state.history] == ["i0", "i1", "i2"]


async def test_a_batch_changes_no_signal_until_its_outcome_is_applied(
    edge_context: Context,
) -> None:
    ctx = edge_context
    await ingest_batch(
        [RawMessage("items", 0, 0, b"i0", orjson.dumps({"item_id": "i0", "title": "x"}), 1.7e9)],
        ctx,
    )
    batch = [_event(1, "u", "i0"), _event(2, "v", "i0")]
    for _ in range(3):  # a batch retried three times
        result = await recommend_batch(batch, ctx)
    assert len(ctx.signals.trending) == 0
    ctx.signals.apply(result.signals)
    assert ctx.signals.trending.score("i0", now=1.7e9 + 2) == pytest.approx(2.0, rel=1e-3)


async def test_a_far_future_event_is_dead_lettered_and_leaves_the_signals_alone(
    edge_context: Context,
) -> None:
    ctx = edge_context
    far = RawMessage(
        "user-events", 0, 9, b"x",
        orjson.dumps({"event_id": "f", "user_id": "x", "item_id": "i0", "type": "click",
                      "ts": ctx.clock() + 300 * 86400.0}),
        1.7e9,
    )  # fmt: skip
    result = await recommend_batch([far], ctx)
    assert [(d.source.offset, d.stage) for d in result.dead_letters] == [(9, "decode")]
    assert result.signals.trending == [] and result.outputs == []


async def test_a_stored_user_the_encoder_makes_no_vector_for_keeps_the_stored_one(
    edge_context: Context,
) -> None:
    ctx = edge_context
    assert isinstance(ctx.store, EdgeVectorStore)
    await ingest_batch(
        [RawMessage("items", 0, 0, b"i0", orjson.dumps({"item_id": "i0", "title": "x"}), 1.7e9)],
        ctx,
    )
    rng = np.random.default_rng(0)
    drawn = {u: rng.normal(size=ctx.triton.dim).astype(np.float32) for u in ("gone", "kept")}
    vectors = {u: v / np.linalg.norm(v) for u, v in drawn.items()}  # as the store keeps them
    past = [Interaction("retired", "click", 1.0, 1.7e9, "e0")]  # no longer in the catalogue
    await ctx.store.upsert_users(
        [UserState(u, history=past, seen=["retired"], vector=v) for u, v in vectors.items()]
    )
    ctx.store.user_cache.clear()  # read from the engine, as a user not seen lately

    result = await recommend_batch([_event(1, "gone", "retired2"), _event(2, "kept", "i0")], ctx)

    states = {state.user_id: state for state in result.user_states}
    # No history item in the catalogue: the stored vector stays (the fan-out reaches it).
    assert states["gone"].vector is not None
    np.testing.assert_allclose(states["gone"].vector, vectors["gone"], atol=1e-6)
    # One: a vector made afresh.
    assert states["kept"].vector is not None
    assert not np.allclose(states["kept"].vector, vectors["kept"])
