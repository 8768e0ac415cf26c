"""Triton's HTTP inference request, made directly: one HTTP/1.1 POST with Triton's binary
tensor extension over a pooled keep-alive connection.

tritonclient's asyncio HTTP client goes through aiohttp's request machinery and builds its
own input and result objects: for the one request a micro-batch makes, it cost the worker
about twice the CPU of this one (`python -m load_tests triton-client`). Readiness, metadata, model
configs and the repository index stay on tritonclient; gRPC stays on tritonclient's client.

Errors keep tritonclient's types, so the adapter classifies them as before: a refusal is an
`InferenceServerException` carrying the HTTP status, a transport failure a `ConnectionError`
(an `OSError`), a late answer `TimeoutError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import numpy as np
import orjson
from tritonclient.utils import (
    InferenceServerException,
    deserialize_bytes_tensor,
    serialize_byte_tensor,
    triton_to_np_dtype,
)

# Idle connections kept per client; more concurrent requests open more and close the extra.
POOL_SIZE = 8
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpInference:
    def __init__(self, url: str, *, timeout_s: float, ssl_context: ssl.SSLContext | None) -> None:
        """`url`: "host:port"; `timeout_s` bounds each request, connecting included."""
        host, _, port = url.rpartition(":")
        self.host, self.port = host, int(port)
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self._idle: list[Connection] = []

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, tuple[np.ndarray, str]],
        outputs: Sequence[str],
    ) -> dict[str, np.ndarray]:
        """Named (array, Triton datatype) inputs -> the named outputs, all sent and received
        as binary tensors (BYTES as Triton's length-prefixed strings)."""
        header, tensors = _request_body(inputs, outputs)
        head = (
            f"POST /v2/models/{quote(model)}/infer HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\n"
            f"Content-Length: {len(header) + sum(len(t) for t in tensors)}\r\n\r\n"
        ).encode("latin-1")
        async with asyncio.timeout(self.timeout_s):
            status, headers, body = await self._exchange([head, header, *tensors])
        if status != 200:
            raise InferenceServerException(msg=_error_text(body), status=str(status))
        length = headers.get("inference-header-content-length")
        try:
            return _outputs(body, int(length) if length is not None else len(body))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InferenceServerException(msg=f"an unreadable answer: {exc!r}") from exc

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def _exchange(self, request: list[bytes]) -> tuple[int, dict[str, str], bytes]:
        """One request and its response. A pooled connection the server has closed since
        (a restart, an idle timeout) fails at once: the request goes again on a new one."""
        while True:
            reused = bool(self._idle)
            reader, writer = self._idle.pop() if reused else await self._open()
            try:
                writer.writelines(request)
                status, headers, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                writer.close()
                if reused:
                    continue
                raise ConnectionError(f"Triton at {self.host}:{self.port}: {exc!r}") from exc
            except BaseException:
                writer.close()  # cancelled or timed out: its answer may still arrive
                raise
            if headers.get("connection", "").lower() == "close" or len(self._idle) >= POOL_SIZE:
                writer.close()
            else:
                self._idle.append((reader, writer))
            return status, headers, body

    async def _open(self) -> Connection:
        return await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self.ssl_context,
            server_hostname=self.host if self.ssl_context is not None else None,
        )


def _request_body(
    inputs: Mapping[str, tuple[np.ndarray, str]], outputs: Sequence[str]
) -> tuple[bytes, list[bytes]]:
    """-> (the JSON inference header, each input's bytes in the header's order)."""
    described, tensors = [], []
    for name, (array, datatype) in inputs.items():
        if datatype == "BYTES":
            serialized = serialize_byte_tensor(array)
            raw = serialized.item() if serialized.size > 0 else b""
        else:
            raw = np.ascontiguousarray(array).tobytes()
        tensors.append(raw)
        described.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    wanted = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
    return orjson.dumps({"inputs": described, "outputs": wanted}), tensors


def _outputs(body: bytes, header_length: int) -> dict[str, np.ndarray]:
    """The response's outputs by name, each binary tensor read where the header puts it."""
    header = orjson.loads(body[:header_length])
    arrays, offset = {}, header_length
    for output in header.get("outputs", []):
        shape, datatype = output["shape"], output["datatype"]
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:  # sent as JSON after all
            values = np.array(output["data"], dtype=triton_to_np_dtype(datatype))
        elif datatype == "BYTES":
            values = deserialize_bytes_tensor(body[offset : offset + size])
        else:
            values = np.frombuffer(body, triton_to_np_dtype(datatype), offset=offset,
                                   count=int(np.prod(shape)))  # fmt: skip
        arrays[output["name"]] = values.reshape(shape)
        offset += size or 0
    return arrays


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunks(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(parts[1]), headers, body


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the chunk's CRLF
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
        pass
    return b"".join(chunks)


def _error_text(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body.decode("utf-8", "replace") or "an empty error response"
