"""Triton Python model `audio_encoder`: PCM WAV bytes -> aiSFX audio embeddings.

AUDIO (TYPE_STRING [1], WAV bytes) -> AUDIO_EMBEDDING (FP32 [512], the mean of the aiSFX
embeddings of the clip's ~2.3 s log-mel blocks) and ERROR (TYPE_STRING [1]: empty, or why
this row could not be decoded; such a row's embedding is zeros). Decoding and the log-mel
front end happen here, in numpy.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from audio_preprocess import AudioDecodeError, preprocess_audio

INPUT_AUDIO = "AUDIO"
OUTPUT_EMBEDDING = "AUDIO_EMBEDDING"
OUTPUT_ERROR = "ERROR"
EMBEDDING_DIM = 512


def _parameter(args: dict[str, Any], name: str, default: str) -> str:
    parameters = json.loads(args["model_config"]).get("parameters", {})
    return str(parameters.get(name, {}).get("string_value", default))


def _onnx_session(path: Path, args: dict[str, Any]) -> ort.InferenceSession:
    """CUDA when this onnxruntime build and machine have it, CPU otherwise; the CPU thread
    count comes from the `intra_op_threads` config parameter because models share cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(_parameter(args, "intra_op_threads", "1"))
    options.inter_op_num_threads = 1
    # Spinning idle threads steal the cores the other models' instances need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        device = {"device_id": int(args.get("model_instance_device_id", "0"))}
        providers.insert(0, ("CUDAExecutionProvider", device))
    return ort.InferenceSession(str(path), options, providers=providers)


def _decode(data: bytes) -> np.ndarray | str:
    try:
        return preprocess_audio(data)
    except AudioDecodeError as exc:
        return str(exc)
    except Exception as exc:  # untrusted bytes: any failure is this row's, never the batch's
        return f"cannot decode: {type(exc).__name__}"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.session = _onnx_session(version_dir / "model.onnx", args)
        # Caps the blocks per network run: activations of one block take ~2.5 MB.
        self.max_blocks = int(_parameter(args, "max_blocks_per_run", "64"))
        self.pool = ThreadPoolExecutor(max_workers=int(_parameter(args, "decode_threads", "2")))

    def _embed_blocks(self, blocks: np.ndarray) -> np.ndarray:
        runs = [
            self.session.run(None, {"spectrogram": blocks[start : start + self.max_blocks]})[0]
            for start in range(0, len(blocks), self.max_blocks)
        ]
        return np.concatenate(runs)

    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [
            pb_utils.get_input_tensor_by_name(request, INPUT_AUDIO).as_numpy().reshape(-1)
            for request in requests
        ]
        decoded = list(self.pool.map(_decode, [data for batch in batches for data in batch]))
        rows = len(decoded)
        embeddings = np.zeros((rows, EMBEDDING_DIM), dtype=np.float32)
        errors = np.array([b""] * rows, dtype=np.object_)
        good = [i for i, item in enumerate(decoded) if isinstance(item, np.ndarray)]
        for i, item in enumerate(decoded):
            if isinstance(item, str):
                errors[i] = item.encode("utf-8")
        if good:
            block_embeddings = self._embed_blocks(np.concatenate([decoded[i] for i in good]))
            bounds = np.cumsum([0] + [len(decoded[i]) for i in good])
            for slot, i in enumerate(good):
                embeddings[i] = block_embeddings[bounds[slot] : bounds[slot + 1]].mean(axis=0)
        responses = []
        offsets = np.cumsum([0] + [len(batch) for batch in batches])
        for start, end in itertools.pairwise(offsets):
            outputs = [
                pb_utils.Tensor(OUTPUT_EMBEDDING, embeddings[start:end]),
                pb_utils.Tensor(OUTPUT_ERROR, errors[start:end].reshape(-1, 1)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def finalize(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
