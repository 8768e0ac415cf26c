"""The Triton adapter's readiness probe against the real server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from worker.triton import ItemContent, TritonClient, TritonUnavailable

pytestmark = pytest.mark.integration


def _count_readiness_requests(client: TritonClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The readiness requests the client sends from now on ("server" or a model's name)."""
    asked: list[str] = []
    connection: Any = client._connection()
    server_ready, model_ready = connection.is_server_ready, connection.is_model_ready

    async def is_server_ready(*args: Any, **kwargs: Any) -> bool:
        asked.append("server")
        return bool(await server_ready(*args, **kwargs))

    async def is_model_ready(model: str, *args: Any, **kwargs: Any) -> bool:
        asked.append(model)
        return bool(await model_ready(model, *args, **kwargs))

    monkeypatch.setattr(connection, "is_server_ready", is_server_ready)
    monkeypatch.setattr(connection, "is_model_ready", is_model_ready)
    return asked


async def test_a_probe_asks_only_about_models_without_a_recent_answer(
    triton_client: TritonClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _count_readiness_requests(triton_client, monkeypatch)
    await triton_client.probe(answered_within_s=60.0)
    assert asked == ["server", triton_client.item_model, triton_client.user_model]

    asked.clear()
    dim = triton_client.dim
    await triton_client.encode_users(
        np.ones((1, 2, dim), np.float32), np.ones((1, 2), np.float32), np.zeros((1, 2), np.float32)
    )
    await triton_client.probe(answered_within_s=60.0)
    assert asked == [triton_client.item_model], "the user model's answer vouches for it"

    asked.clear()
    await triton_client.embed_items([ItemContent(text="A film about the sea")])
    await triton_client.probe(answered_within_s=60.0)
    assert asked == [], "both models answered within the window: no request"

    await triton_client.probe()
    assert asked == ["server", triton_client.item_model, triton_client.user_model]


async def test_an_unreachable_triton_voids_the_recent_answers_a_probe_would_trust(
    triton_client: TritonClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    dim = triton_client.dim
    await triton_client.embed_items([ItemContent(text="A film about the sea")])
    await triton_client.encode_users(
        np.ones((1, 2, dim), np.float32), np.ones((1, 2), np.float32), np.zeros((1, 2), np.float32)
    )

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError("Triton is gone")

    inference: Any = triton_client._inference
    with monkeypatch.context() as patched:
        patched.setattr(inference, "infer", refused)
        with pytest.raises(TritonUnavailable):
            await triton_client.embed_items([ItemContent(text="A film about the sea")])
    asked = _count_readiness_requests(triton_client, monkeypatch)
    # Both models answered a moment ago, but a probe that trusted that would call the
    # server up again while the batches fail on it.
    await triton_client.probe(answered_within_s=60.0)
    assert asked == ["server", triton_client.item_model, triton_client.user_model]
