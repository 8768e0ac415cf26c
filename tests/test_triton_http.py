"""Triton's HTTP inference made directly: the same answers as tritonclient's, its errors
classified as before, pooled connections that went stale replaced, late answers cut off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

from worker import triton_http
from worker.stack.tritonserver import TritonServer
from worker.triton import (
    USER_MODEL,
    USER_MODEL_INPUT_AGES,
    USER_MODEL_INPUT_VECTORS,
    USER_MODEL_INPUT_WEIGHTS,
    USER_MODEL_OUTPUT_VECTOR,
    TritonClient,
    TritonError,
    TritonUnavailable,
)
from worker.triton_http import HttpInference
from worker.triton_models import TEXT_MODEL, TEXT_MODEL_INPUT, TEXT_MODEL_OUTPUT

pytestmark = pytest.mark.integration


def _user_inputs(users: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(users * 100 + length)
    return {
        USER_MODEL_INPUT_VECTORS: rng.standard_normal((users, length, 256)).astype(np.float32),
        USER_MODEL_INPUT_WEIGHTS: rng.uniform(-1, 2, (users, length)).astype(np.float32),
        USER_MODEL_INPUT_AGES: rng.uniform(0, 1e5, (users, length)).astype(np.float32),
    }


async def _tritonclient_answer(
    url: str, model: str, inputs: dict[str, np.ndarray], datatype: str, output: str
) -> np.ndarray:
    client = httpaio.InferenceServerClient(url)
    try:
        tensors = []
        for name, array in inputs.items():
            tensor = httpclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        result = await client.infer(model, tensors)
        answer = result.as_numpy(output)
        assert answer is not None
        return answer
    finally:
        await client.close()


@pytest.fixture
async def inference(triton_server: TritonServer) -> AsyncIterator[HttpInference]:
    client = HttpInference(triton_server.http_url, timeout_s=30.0, ssl_context=None)
    yield client
    await client.close()


async def test_float_tensors_come_back_as_tritonclient_reads_them(
    inference: HttpInference, triton_server: TritonServer
) -> None:
    for users, length in [(1, 1), (13, 50)]:
        inputs = _user_inputs(users, length)
        typed = {name: (array, "FP32") for name, array in inputs.items()}
        got = await inference.infer(USER_MODEL, typed, [USER_MODEL_OUTPUT_VECTOR])
        want = await _tritonclient_answer(
            triton_server.http_url, USER_MODEL, inputs, "FP32", USER_MODEL_OUTPUT_VECTOR
        )
        assert got[USER_MODEL_OUTPUT_VECTOR].dtype == np.float32
        np.testing.assert_array_equal(got[USER_MODEL_OUTPUT_VECTOR], want)


async def test_string_tensors_come_back_as_tritonclient_reads_them(
    inference: HttpInference, triton_server: TritonServer
) -> None:
    texts = np.array([["a film about the sea"], [""], ["é ü ß 東京"]], dtype=np.object_)
    texts[:, 0] = [t.encode("utf-8") for t in texts[:, 0]]
    got = await inference.infer(
        TEXT_MODEL, {TEXT_MODEL_INPUT: (texts, "BYTES")}, [TEXT_MODEL_OUTPUT]
    )
    want = await _tritonclient_answer(
        triton_server.http_url, TEXT_MODEL, {TEXT_MODEL_INPUT: texts}, "BYTES", TEXT_MODEL_OUTPUT
    )
    np.testing.assert_array_equal(got[TEXT_MODEL_OUTPUT], want)


async def test_answers_come_uncompressed(
    inference: HttpInference, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Triton compresses an answer when the request accepts it: CPU on both sides for nothing.
    seen: list[dict[str, str]] = []
    read = triton_http._read_response

    async def recorded(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
        answer = await read(reader)
        seen.append(answer[1])
        return answer

    monkeypatch.setattr(triton_http, "_read_response", recorded)
    inputs = {n: (a, "FP32") for n, a in _user_inputs(4, 8).items()}
    await inference.infer(USER_MODEL, inputs, [USER_MODEL_OUTPUT_VECTOR])
    assert seen and "content-encoding" not in seen[0]


async def test_a_refused_request_carries_its_status_and_is_the_data_s_error(
    inference: HttpInference, triton_client: TritonClient
) -> None:
    vectors = np.zeros((1, 2, 7), dtype=np.float32)  # the model wants 256 per item
    typed = {USER_MODEL_INPUT_VECTORS: (vectors, "FP32")}
    with pytest.raises(InferenceServerException) as refused:
        await inference.infer(USER_MODEL, typed, [USER_MODEL_OUTPUT_VECTOR])
    assert refused.value.status() == "400" and refused.value.message()
    with pytest.raises(TritonError) as classified:
        await triton_client.infer(USER_MODEL, {USER_MODEL_INPUT_VECTORS: vectors}, ["X"])
    assert not isinstance(classified.value, TritonUnavailable)
    # The connection stays usable after an error answer.
    inputs = {n: (a, "FP32") for n, a in _user_inputs(1, 1).items()}
    assert (await inference.infer(USER_MODEL, inputs, [USER_MODEL_OUTPUT_VECTOR]))[
        USER_MODEL_OUTPUT_VECTOR
    ].shape == (1, 256)


async def test_a_pooled_connection_that_died_is_replaced_without_an_error(
    inference: HttpInference,
) -> None:
    inputs = {n: (a, "FP32") for n, a in _user_inputs(2, 3).items()}
    first = await inference.infer(USER_MODEL, inputs, [USER_MODEL_OUTPUT_VECTOR])
    for _, writer in inference._idle:
        writer.transport.abort()  # what a restarted server leaves in the pool
    again = await inference.infer(USER_MODEL, inputs, [USER_MODEL_OUTPUT_VECTOR])
    np.testing.assert_array_equal(first[USER_MODEL_OUTPUT_VECTOR], again[USER_MODEL_OUTPUT_VECTOR])


async def test_concurrent_requests_each_get_their_own_answer(inference: HttpInference) -> None:
    batches = [_user_inputs(users, 4) for users in range(1, 7)]
    answers = await asyncio.gather(
        *(
            inference.infer(
                USER_MODEL, {n: (a, "FP32") for n, a in b.items()}, [USER_MODEL_OUTPUT_VECTOR]
            )
            for b in batches
        )
    )
    assert [a[USER_MODEL_OUTPUT_VECTOR].shape[0] for a in answers] == list(range(1, 7))


async def _serve(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = next(
        int(line.split(":")[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length")
    )
    await reader.readexactly(length)


async def test_a_chunked_answer_is_read_whole() -> None:
    output = {"name": "Y", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    header = orjson.dumps({"outputs": [output]})
    body = header + np.array([1.5, -2.0], dtype=np.float32).tobytes()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            + f"Inference-Header-Content-Length: {len(header)}\r\n\r\n".encode()
            + b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in (body[:10], body[10:]))
            + b"0\r\n\r\n"
        )
        await writer.drain()

    server, url = await _serve(handle)
    client = HttpInference(url, timeout_s=5.0, ssl_context=None)
    try:
        got = await client.infer("m", {"X": (np.zeros(1, np.float32), "FP32")}, ["Y"])
        np.testing.assert_array_equal(got["Y"], [1.5, -2.0])
    finally:
        await client.close()
        server.close()


async def test_an_unreadable_answer_is_triton_s_error_not_a_crash() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!")
        await writer.drain()

    server, url = await _serve(handle)
    client = TritonClient(url, timeout_s=5.0)
    try:
        with pytest.raises(TritonError, match="unreadable answer") as raised:
            await client.infer(USER_MODEL, {"X": np.zeros(1, np.float32)}, ["Y"])
        assert not isinstance(raised.value, TritonUnavailable)
    finally:
        await client.close()
        server.close()


async def test_no_answer_within_the_timeout_is_triton_unavailable() -> None:
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await done.wait()  # never answers
        writer.close()

    server, url = await _serve(handle)
    client = TritonClient(url, timeout_s=0.3)
    try:
        with pytest.raises(TritonUnavailable):
            await client.infer(USER_MODEL, {"X": np.zeros(1, np.float32)}, ["Y"])
        assert client._inference is not None and client._inference._idle == []
    finally:
        done.set()
        await client.close()
        server.close()


async def test_a_server_that_is_not_there_is_triton_unavailable() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server, url = await _serve(handle)  # a free port, closed again
    server.close()
    await server.wait_closed()
    client = TritonClient(url, timeout_s=2.0)
    try:
        with pytest.raises(TritonUnavailable):
            await client.infer(USER_MODEL, {"X": np.zeros(1, np.float32)}, ["Y"])
    finally:
        await client.close()
