"""A new fusion version reaches a running tritonserver and a running client, no restarts.

The server polls its repository (`--model-control-mode=poll`); `models.export` publishes new
weights as a new version directory; the client's `model_version()` re-reads what is served.
A repository holding only `fusion` keeps the server start short.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models import export, fusion
from models.reference import REPO_DIR
from worker.stack.tritonserver import TritonServer
from worker.triton import TritonClient
from worker.triton_models import (
    FUSION_MODEL,
    FUSION_MODEL_INPUT_AUDIO,
    FUSION_MODEL_INPUT_IMAGE,
    FUSION_MODEL_INPUT_IMAGE_TEXT,
    FUSION_MODEL_INPUT_MASK,
    FUSION_MODEL_INPUT_TEXT,
    FUSION_MODEL_OUTPUT,
)

pytestmark = pytest.mark.integration

INPUTS = (
    FUSION_MODEL_INPUT_TEXT,
    FUSION_MODEL_INPUT_IMAGE_TEXT,
    FUSION_MODEL_INPUT_IMAGE,
    FUSION_MODEL_INPUT_AUDIO,
)


def fusion_feeds(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    text_dim, image_dim, audio_dim = fusion.MODALITY_DIMS
    feeds = {
        name: rng.standard_normal((rows, dim)).astype(np.float32)
        for name, dim in zip(INPUTS, (text_dim, text_dim, image_dim, audio_dim), strict=True)
    }
    feeds[FUSION_MODEL_INPUT_MASK] = np.ones((rows, 3), dtype=np.float32)
    return feeds


@torch.inference_mode()
def expected(model: fusion.FusionModel, feeds: dict[str, np.ndarray]) -> np.ndarray:
    names = (*INPUTS, FUSION_MODEL_INPUT_MASK)
    return model(*(torch.from_numpy(feeds[name]) for name in names)).numpy()


async def wait_for_version(client: TritonClient, wanted: str, timeout_s: float) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    version = await client.model_version()
    while version != wanted and loop.time() < deadline:
        await asyncio.sleep(0.2)
        version = await client.model_version()
    return version


async def test_a_published_fusion_version_is_served_without_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export.export_all(REPO_DIR, models=[FUSION_MODEL])
    served = max(export.version_dirs(REPO_DIR / FUSION_MODEL))
    repo = tmp_path / "repo"
    shutil.copytree(
        REPO_DIR / FUSION_MODEL,
        repo / FUSION_MODEL,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy2(fusion.weights_path(served), weights)
    monkeypatch.setattr(fusion, "WEIGHTS_DIR", weights)

    poll = ("--model-control-mode=poll", "--repository-poll-secs=1")
    server = TritonServer(repo, tmp_path / "triton", extra_args=poll).start()
    # The fusion model stands in for both client models: it has the ITEM_VECTOR output.
    client = TritonClient(
        server.http_url, item_model=FUSION_MODEL, user_model=FUSION_MODEL, version_ttl_s=0.0
    )
    try:
        await client.wait_ready(timeout_s=30.0)
        assert await client.model_version() == f"fusion:{served}"
        feeds = fusion_feeds(4)
        before = (await client.infer(FUSION_MODEL, feeds, [FUSION_MODEL_OUTPUT]))[
            FUSION_MODEL_OUTPUT
        ]
        np.testing.assert_allclose(
            before, expected(fusion.load_weights(fusion.weights_path(served)), feeds), atol=1e-4
        )

        new_model = fusion.FusionModel(seed=served + 1).eval()
        fusion.save_weights(new_model, fusion.weights_path(served + 1))
        assert export.export_all(repo, models=[FUSION_MODEL]) == [FUSION_MODEL]

        assert await wait_for_version(client, f"fusion:{served + 1}", 60.0) == (
            f"fusion:{served + 1}"
        )
        after = (await client.infer(FUSION_MODEL, feeds, [FUSION_MODEL_OUTPUT]))[
            FUSION_MODEL_OUTPUT
        ]
        np.testing.assert_allclose(after, expected(new_model, feeds), atol=1e-4)
        assert not np.allclose(after, before, atol=1e-2)
    finally:
        await client.close()
        server.stop()
