"""Async adapter to the Triton model repository in `triton_repo/` (HTTP or gRPC, optionally
over TLS: `worker.triton_transport`).

The worker makes one `item_embedder` request per item micro-batch and one `user_encoder`
request per event micro-batch; a batch larger than the model's `max_batch_size` is split
into several requests sent concurrently. Every failure surfaces as `TritonError`.
The tensor names below must match the `config.pbtxt` files (a test checks that they do).

`versions()` names the versions Triton serves now (item_embedder, the models it composes,
user_encoder) and re-reads them once `version_ttl_s` has passed, so a version that a polling
tritonserver (`--model-control-mode=poll`) swapped in shows up without a restart.
`embed_items_in_space` labels item vectors with the exact item space that made them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from worker.errors import InfrastructureError
from worker.triton_http import HttpInference
from worker.triton_transport import TritonTransport

EMBEDDING_DIM = 256

# item_embedder: the entry point for item micro-batches. Empty string = modality absent.
ITEM_MODEL = "item_embedder"
ITEM_MODEL_INPUT_TEXT = "TEXT"  # TYPE_STRING [1], UTF-8 text
ITEM_MODEL_INPUT_IMAGE = "IMAGE"  # TYPE_STRING [1], encoded image bytes
ITEM_MODEL_INPUT_AUDIO = "AUDIO"  # TYPE_STRING [1], PCM WAV bytes
ITEM_MODEL_OUTPUT_VECTOR = "ITEM_VECTOR"  # FP32 [256], L2-normalised; zeros on error
ITEM_MODEL_OUTPUT_ERROR = "ERROR"  # TYPE_STRING [1], empty = ok
# item_embedder's config parameter listing the models it calls, comma-separated.
ITEM_MODEL_COMPOSED_PARAMETER = "composed_models"

# user_encoder: recency-decayed signed-weighted mean of a user's recent item vectors.
USER_MODEL = "user_encoder"
USER_MODEL_INPUT_VECTORS = "ITEM_VECTORS"  # FP32 [-1, 256], oldest first, zero-padded
USER_MODEL_INPUT_WEIGHTS = "EVENT_WEIGHTS"  # FP32 [-1], 0 = padding
USER_MODEL_INPUT_AGES = "AGES_SECONDS"  # FP32 [-1]
USER_MODEL_OUTPUT_VECTOR = "USER_VECTOR"  # FP32 [256]; zeros when there is nothing to go on
# user_encoder's config parameter naming the item space it was trained on ("" or absent: any).
USER_MODEL_ITEM_SPACE_PARAMETER = "trained_item_space"

_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
_UNAVAILABLE_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


class TritonError(RuntimeError):
    """Triton refused or failed a request (it may be the request's data: see `probe`)."""


class TritonUnavailable(TritonError, InfrastructureError):
    """Triton could not be reached, timed out, or is not ready: retried, never the data's
    fault."""

    dependency = "triton"


@dataclass(frozen=True, slots=True)
class ServedVersions:
    """What Triton serves: `item_space` names every model an item vector depends on (e.g.
    "item_embedder:1+text_encoder:1+image_encoder:1+audio_encoder:1+fusion:2"): vectors of two
    item spaces must never be compared. `user_trained_for` is the item space the user model
    was trained on, "" when it does not say (a model that works in any space)."""

    item_space: str
    user_model: str
    user_trained_for: str = ""

    @property
    def full(self) -> str:
        parts = self.item_space.split("+")
        return "+".join(parts if self.user_model in parts else [*parts, self.user_model])

    def answering(self, searched_space: str) -> str:
        """The model_version of answers from `searched_space`'s item vectors (the served
        one when the store does not know its space)."""
        if not searched_space:
            return self.full
        return ServedVersions(searched_space, self.user_model).full

    @property
    def user_model_fits(self) -> bool:
        return self.user_trained_for in ("", self.item_space)


@dataclass(frozen=True, slots=True)
class ItemContent:
    """One item's raw content; None (or empty) means the item lacks that modality."""

    text: str | None = None
    image: bytes | None = None
    audio: bytes | None = None


def _strings(values: Sequence[bytes]) -> np.ndarray:
    """-> the [n, 1] object array tritonclient sends as a BYTES tensor."""
    column = np.empty((len(values), 1), dtype=np.object_)
    column[:, 0] = values
    return column


class TritonClient:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        item_model: str = ITEM_MODEL,
        user_model: str = USER_MODEL,
        version_ttl_s: float = 5.0,
        transport: TritonTransport | None = None,
    ) -> None:
        """`url` is "host:port" of Triton's HTTP (or, with a gRPC transport, gRPC)
        endpoint; `timeout_s` bounds each request; `model_version()` answers from memory for
        `version_ttl_s` after reading it."""
        self.url = url
        self.transport = transport or TritonTransport()
        self.timeout_s = timeout_s
        self.version_ttl_s = version_ttl_s
        self.item_model = item_model
        self.user_model = user_model
        # Created on first use: aiohttp sessions belong to the event loop that makes them.
        self._client: Any = None
        self._inference = (  # HTTP inference requests (not loop-bound: connections are lazy)
            HttpInference(url, timeout_s=timeout_s, ssl_context=self.transport.ssl_context())
            if self.transport.protocol == "http"
            else None
        )
        self._max_batch: dict[str, int] = {}
        self._dim = EMBEDDING_DIM
        self._versions: ServedVersions | None = None
        self._versions_read_at = 0.0
        self._layout: tuple[tuple[str, ...], str] | None = None
        self._answered_at: dict[str, float] = {}  # model -> monotonic time of its last answer

    @property
    def dim(self) -> int:
        """Item and user vector size: the served item model's, once `wait_ready` saw it."""
        return self._dim

    def _connection(self) -> Any:
        if self._client is None:
            self._client = self.transport.connect(self.url, self.timeout_s)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if self._inference is not None:
            await self._inference.close()  # idle connections only: it can go on answering
        if client is not None:
            await client.close()

    async def probe(self, answered_within_s: float = 0.0) -> None:
        """One readiness check of the server and both models (no inference); TritonUnavailable
        naming what is not ready. Models that answered within `answered_within_s` are not
        asked, nor the server then (under load the check was 2-4% of the busy time)."""
        since, both = time.monotonic() - answered_within_s, (self.item_model, self.user_model)
        models = [m for m in both if self._answered_at.get(m, -np.inf) < since]
        try:
            client = self._connection()
            if len(models) == 2 and not await client.is_server_ready():
                raise TritonUnavailable(f"Triton at {self.url}: server not ready")
            waiting = [m for m in models if not await client.is_model_ready(m)]
        except (InferenceServerException, *_TRANSPORT_ERRORS) as exc:
            raise TritonUnavailable(f"Triton at {self.url}: {type(exc).__name__}: {exc}") from exc
        if waiting:
            raise TritonUnavailable(f"Triton at {self.url}: not ready: {', '.join(waiting)}")

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once the server and both models are ready; TritonError after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                await self.probe()
                break
            except TritonUnavailable as exc:
                problem = str(exc)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TritonUnavailable(f"not ready after {timeout_s} s: {problem}")
            await asyncio.sleep(min(0.25, remaining))
        config = await self._model_config(self.item_model)
        outputs = {output["name"]: output for output in config.get("output", [])}
        if ITEM_MODEL_OUTPUT_VECTOR not in outputs:
            raise TritonError(f"{self.item_model} has no {ITEM_MODEL_OUTPUT_VECTOR} output")
        self._dim = int(outputs[ITEM_MODEL_OUTPUT_VECTOR]["dims"][-1])

    async def model_version(self) -> str:
        """E.g. "item_embedder:1+text_encoder:1+image_encoder:1+audio_encoder:1+fusion:2+
        user_encoder:1": the versions served now, at most `version_ttl_s` old."""
        return (await self.versions()).full

    async def versions(self, max_age_s: float | None = None) -> ServedVersions:
        """The served versions, read again when older than `max_age_s` (default
        `version_ttl_s`): one repository-index request, plus the two models' configs."""
        now = time.monotonic()
        age = now - self._versions_read_at
        if self._versions is None or age >= (
            self.version_ttl_s if max_age_s is None else max_age_s
        ):
            if self._layout is None or age >= self.version_ttl_s:
                self._layout = await self._read_layout()
            served = await self._read_index()
            item_models, trained_for = self._layout
            missing = [m for m in (*item_models, self.user_model) if m not in served]
            if missing:
                raise TritonError(f"Triton reports no loaded version of {', '.join(missing)}")
            self._versions = ServedVersions(
                item_space="+".join(f"{m}:{served[m]}" for m in item_models),
                user_model=f"{self.user_model}:{served[self.user_model]}",
                user_trained_for=trained_for,
            )
            self._versions_read_at = now
        return self._versions

    async def _read_layout(self) -> tuple[tuple[str, ...], str]:
        """(the models item vectors depend on, the item space the user model declares)."""
        item_config = await self._model_config(self.item_model)
        composed = item_config.get("parameters", {}).get(ITEM_MODEL_COMPOSED_PARAMETER, {})
        names = [self.item_model, *(n.strip() for n in composed.get("string_value", "").split(","))]
        user_config = await self._model_config(self.user_model)
        declared = user_config.get("parameters", {}).get(USER_MODEL_ITEM_SPACE_PARAMETER, {})
        # dict.fromkeys: ordered and without duplicates or blanks.
        return tuple(dict.fromkeys(n for n in names if n)), declared.get("string_value", "")

    async def _read_index(self) -> dict[str, str]:
        """model -> the version serving now (the highest ready one: while a polling server
        swaps versions both may be ready, and the new one serves)."""
        try:
            index = await self.transport.repository_index(self._connection())
        except (InferenceServerException, *_TRANSPORT_ERRORS) as exc:
            raise self._error("repository", "reading the model index", exc) from exc
        served: dict[str, int] = {}
        for entry in index:
            version = str(entry.get("version", ""))
            if entry.get("state") == "READY" and version.isdigit():
                name = str(entry["name"])
                served[name] = max(served.get(name, 0), int(version))
        return {name: str(version) for name, version in served.items()}

    async def embed_items_in_space(
        self, contents: Sequence[ItemContent]
    ) -> tuple[np.ndarray, list[str | None], str]:
        """`embed_items` plus the item space the vectors are in: the served versions are read
        again after the request, and a request that a version swap may have overtaken is
        sent again, so a vector is never labelled with a space that did not make it."""
        space = (await self.versions()).item_space
        for _ in range(3):
            vectors, errors = await self.embed_items(contents)
            after = (await self.versions(max_age_s=0.0)).item_space
            if after == space:
                return vectors, errors, space
            space = after
        raise TritonUnavailable(f"{self.item_model}: model versions kept changing while embedding")

    async def embed_items(
        self, contents: Sequence[ItemContent]
    ) -> tuple[np.ndarray, list[str | None]]:
        """-> (vectors float32 [B, dim], per-row error text or None). Rows with an error
        have all-zero vectors; one bad row does not affect the others."""
        if not contents:
            return np.zeros((0, self.dim), dtype=np.float32), []
        chunks = await self._chunks(self.item_model, len(contents))
        results = await asyncio.gather(*(self._embed_chunk(contents[s:e]) for s, e in chunks))
        vectors = np.concatenate([vectors for vectors, _ in results])
        errors = [error for _, chunk_errors in results for error in chunk_errors]
        return vectors, errors

    async def _embed_chunk(
        self, contents: Sequence[ItemContent]
    ) -> tuple[np.ndarray, list[str | None]]:
        inputs = {
            ITEM_MODEL_INPUT_TEXT: _strings([(c.text or "").encode("utf-8") for c in contents]),
            ITEM_MODEL_INPUT_IMAGE: _strings([c.image or b"" for c in contents]),
            ITEM_MODEL_INPUT_AUDIO: _strings([c.audio or b"" for c in contents]),
        }
        outputs = await self.infer(
            self.item_model, inputs, [ITEM_MODEL_OUTPUT_VECTOR, ITEM_MODEL_OUTPUT_ERROR]
        )
        vectors = outputs[ITEM_MODEL_OUTPUT_VECTOR].astype(np.float32, copy=False)
        errors = [
            error.decode("utf-8", errors="replace") or None
            for error in outputs[ITEM_MODEL_OUTPUT_ERROR].reshape(-1)
        ]
        if vectors.shape != (len(contents), self.dim) or len(errors) != len(contents):
            raise TritonError(
                f"{self.item_model}: expected {len(contents)} rows of {self.dim}, got vectors "
                f"{vectors.shape} and {len(errors)} errors"
            )
        return vectors, errors

    async def encode_users(
        self, item_vectors: np.ndarray, weights: np.ndarray, ages_s: np.ndarray
    ) -> np.ndarray:
        """[B, L, dim], [B, L], [B, L] -> user vectors float32 [B, dim]; all-zero rows mean
        "no usable history"."""
        batch, length = weights.shape[:2] if weights.ndim == 2 else (-1, -1)
        if item_vectors.shape != (batch, length, self.dim) or ages_s.shape != weights.shape:
            raise TritonError(
                f"encode_users: want [B, L, {self.dim}], [B, L], [B, L]; got "
                f"{item_vectors.shape}, {weights.shape}, {ages_s.shape}"
            )
        if batch == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = await self._chunks(self.user_model, batch)
        results = await asyncio.gather(
            *(
                self.infer(
                    self.user_model,
                    {
                        USER_MODEL_INPUT_VECTORS: item_vectors[s:e].astype(np.float32),
                        USER_MODEL_INPUT_WEIGHTS: weights[s:e].astype(np.float32),
                        USER_MODEL_INPUT_AGES: ages_s[s:e].astype(np.float32),
                    },
                    [USER_MODEL_OUTPUT_VECTOR],
                )
                for s, e in chunks
            )
        )
        users = np.concatenate([result[USER_MODEL_OUTPUT_VECTOR] for result in results])
        if users.shape != (batch, self.dim):
            raise TritonError(
                f"{self.user_model}: expected [{batch}, {self.dim}], got {users.shape}"
            )
        return users.astype(np.float32, copy=False)

    async def infer(
        self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """One request: named arrays (object arrays of bytes for strings) -> named outputs."""
        typed = {
            name: (array, "BYTES" if array.dtype == np.object_ else np_to_triton_dtype(array.dtype))
            for name, array in inputs.items()
        }
        try:
            answer: Mapping[str, np.ndarray | None]
            if self._inference is not None:
                answer = await self._inference.infer(model, typed, outputs)
            else:
                answer = await self.transport.grpc_infer(self._connection(), model, typed, outputs)
        except (InferenceServerException, *_TRANSPORT_ERRORS) as exc:
            error = self._error(model, "inference", exc)
            if isinstance(error, TritonUnavailable):
                # Answers from before say nothing now: the next probe asks the server, or
                # it would call Triton up again while the batches fail on it.
                self._answered_at.clear()
            raise error from exc
        self._answered_at[model] = time.monotonic()
        arrays = {}
        for name in outputs:
            if (array := answer.get(name)) is None:
                raise TritonError(f"{model}: the response lacks output {name}")
            arrays[name] = array
        return arrays

    async def _model_config(self, model: str) -> dict[str, Any]:
        try:
            config = await self.transport.model_config(self._connection(), model)
        except (InferenceServerException, *_TRANSPORT_ERRORS) as exc:
            raise self._error(model, "reading model config", exc) from exc
        return config

    def _error(self, model: str, action: str, exc: BaseException) -> TritonError:
        if isinstance(exc, InferenceServerException):
            # gRPC reports transport failures as statuses, not exceptions of their own.
            if any(code in str(exc.status()) for code in _UNAVAILABLE_STATUSES):
                return TritonUnavailable(f"{model}: {action}: {exc.message()}")
            return TritonError(f"{model}: {action} failed: {exc.message()}")
        return TritonUnavailable(
            f"{model}: {action}: no answer from Triton at {self.url}: {type(exc).__name__}: {exc}"
        )

    async def _chunks(self, model: str, rows: int) -> list[tuple[int, int]]:
        """[start, end) row ranges of at most the model's max_batch_size rows."""
        if model not in self._max_batch:
            limit = int((await self._model_config(model)).get("max_batch_size", 0))
            if limit < 1:
                raise TritonError(f"{model}: max_batch_size is {limit}; the client needs batching")
            self._max_batch[model] = limit
        limit = self._max_batch[model]
        return [(start, min(start + limit, rows)) for start in range(0, rows, limit)]
