"""How the Triton client reaches the server: HTTP or gRPC, either optionally over TLS.

Both of tritonclient's asyncio clients have the same calls; what differs (how tensors are
attached, how metadata comes back, TLS options) is kept here so `worker.triton` speaks to
one interface; inference over HTTP goes around tritonclient (`worker.triton_http`). gRPC
message size limits are lifted: an item batch with images is larger than gRPC's 4 MB
default.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio

from worker.settings import Settings

_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


@dataclass(frozen=True, slots=True)
class TritonTransport:
    protocol: Literal["http", "grpc"] = "http"
    tls: bool = False
    cafile: Path | None = None  # the CA that signed the server's certificate (else: system)
    certfile: Path | None = None  # client certificate and key, for mutual TLS
    keyfile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonTransport:
        return cls(
            protocol=settings.triton_protocol,
            tls=settings.triton_tls,
            cafile=settings.triton_tls_cafile,
            certfile=settings.triton_tls_certfile,
            keyfile=settings.triton_tls_keyfile,
        )

    def connect(self, url: str, timeout_s: float) -> Any:
        if self.protocol == "grpc":
            return grpcaio.InferenceServerClient(
                url,
                ssl=self.tls,
                root_certificates=_str(self.cafile),
                private_key=_str(self.keyfile),
                certificate_chain=_str(self.certfile),
                channel_args=_UNLIMITED,
            )
        return httpaio.InferenceServerClient(
            url, conn_timeout=timeout_s, ssl=self.tls, ssl_context=self.ssl_context()
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The HTTP clients' TLS context (None: plain HTTP)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=_str(self.cafile))
        if self.certfile is not None:
            context.load_cert_chain(str(self.certfile), _str(self.keyfile))
        return context

    async def grpc_infer(
        self,
        client: Any,
        model: str,
        inputs: Mapping[str, tuple[np.ndarray, str]],
        outputs: Sequence[str],
    ) -> dict[str, np.ndarray | None]:
        """One inference over gRPC: named (array, Triton datatype) inputs -> named outputs."""
        tensors = []
        for name, (array, datatype) in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        result = await client.infer(model, tensors, outputs=requested)
        return {name: result.as_numpy(name) for name in outputs}

    async def model_metadata(self, client: Any, model: str) -> dict[str, Any]:
        if self.protocol == "grpc":
            return dict(await client.get_model_metadata(model, as_json=True))
        return dict(await client.get_model_metadata(model))

    async def model_config(self, client: Any, model: str) -> dict[str, Any]:
        if self.protocol == "grpc":
            return dict((await client.get_model_config(model, as_json=True))["config"])
        return dict(await client.get_model_config(model))

    async def repository_index(self, client: Any) -> list[dict[str, Any]]:
        """Every model version the server knows: {"name", "version", "state"} each."""
        if self.protocol == "grpc":
            index = await client.get_model_repository_index(as_json=True)
            return list(index.get("models", []))
        return list(await client.get_model_repository_index())


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
