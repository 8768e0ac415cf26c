"""What one user-encoder request costs the worker's process: tritonclient's asyncio HTTP
client against the direct request the worker makes (`worker/triton_http.py`).

    python -m load_tests triton-client [--shapes 1x1,13x2,13x50] [--requests 300]
                                       [--triton-url HOST:PORT] [--out results/triton_client.json]

A shape UxL is a micro-batch of U users with L-event histories (the encoder's [U, L, 256]
input). Each client sends `--requests` requests in turn, alternating in five rounds so that
drift on a shared machine hits both alike; the figures are the client process's CPU time
(process time) and the wall time per request, medians of the rounds. Triton's own CPU is
the same for both. Without `--triton-url` a local tritonserver serves `triton_repo/`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio

from worker.stack.tritonserver import TritonServer
from worker.triton import (
    USER_MODEL,
    USER_MODEL_INPUT_AGES,
    USER_MODEL_INPUT_VECTORS,
    USER_MODEL_INPUT_WEIGHTS,
    USER_MODEL_OUTPUT_VECTOR,
)
from worker.triton_http import HttpInference

REPO = Path(__file__).resolve().parents[1] / "triton_repo"
ROUNDS = 5


def _inputs(users: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        USER_MODEL_INPUT_VECTORS: rng.standard_normal((users, length, 256)).astype(np.float32),
        USER_MODEL_INPUT_WEIGHTS: np.ones((users, length), dtype=np.float32),
        USER_MODEL_INPUT_AGES: rng.uniform(0, 1e5, (users, length)).astype(np.float32),
    }


async def _timed(send: Callable[[], Awaitable[object]], requests: int) -> tuple[float, float]:
    """-> (CPU ms, wall ms) per request."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await send()
    return (
        1000 * (time.process_time() - cpu) / requests,
        1000 * (time.perf_counter() - wall) / requests,
    )


async def _via_tritonclient(client: Any, inputs: dict[str, np.ndarray]) -> object:
    """The request as the worker made it before: tritonclient's objects over aiohttp."""
    tensors = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=True)
        tensors.append(tensor)
    wanted = [httpclient.InferRequestedOutput(USER_MODEL_OUTPUT_VECTOR, binary_data=True)]
    headers = {"Accept-Encoding": "identity"}
    result = await client.infer(USER_MODEL, tensors, outputs=wanted, headers=headers)
    return result.as_numpy(USER_MODEL_OUTPUT_VECTOR)


async def _via_direct(direct: HttpInference, inputs: dict[str, np.ndarray]) -> object:
    typed = {name: (array, "FP32") for name, array in inputs.items()}
    return await direct.infer(USER_MODEL, typed, [USER_MODEL_OUTPUT_VECTOR])


async def measure(url: str, shapes: Sequence[tuple[int, int]], requests: int) -> dict[str, Any]:
    client = httpaio.InferenceServerClient(url)
    direct = HttpInference(url, timeout_s=30.0, ssl_context=None)
    rows = []
    try:
        for users, length in shapes:
            inputs = _inputs(users, length)
            sends = {
                "tritonclient": functools.partial(_via_tritonclient, client, inputs),
                "direct": functools.partial(_via_direct, direct, inputs),
            }
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in sends}
            for _ in range(ROUNDS):
                for name, send in sends.items():
                    figures[name].append(await _timed(send, max(1, requests // ROUNDS)))
            row: dict[str, Any] = {"users": users, "history": length}
            for name, runs in figures.items():
                row[f"{name}_cpu_ms"] = round(statistics.median(c for c, _ in runs), 3)
                row[f"{name}_wall_ms"] = round(statistics.median(w for _, w in runs), 3)
            row["cpu_ratio"] = round(row["direct_cpu_ms"] / row["tritonclient_cpu_ms"], 3)
            rows.append(row)
    finally:
        await client.close()
        await direct.close()
    return {"requests_per_shape": requests, "rounds": ROUNDS, "shapes": rows}


def run(url: str | None, shapes: Sequence[tuple[int, int]], requests: int) -> dict[str, Any]:
    if url is not None:
        return asyncio.run(measure(url, shapes, requests))
    with tempfile.TemporaryDirectory() as work, TritonServer(REPO, Path(work)) as server:
        return asyncio.run(measure(server.http_url, shapes, requests))


def _shapes(text: str) -> list[tuple[int, int]]:
    pairs = [part.split("x") for part in text.split(",")]
    return [(int(users), int(length)) for users, length in pairs]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests triton-client", description=__doc__)
    parser.add_argument("--shapes", type=_shapes, default=_shapes("1x1,13x2,13x50"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--triton-url", default=None)
    parser.add_argument("--out", type=Path, default=Path("results/triton_client.json"))
    args = parser.parse_args(argv)
    report = run(args.triton_url, args.shapes, args.requests)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0
