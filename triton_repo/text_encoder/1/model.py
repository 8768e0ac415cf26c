"""Triton Python model `text_encoder`: UTF-8 strings -> all-MiniLM-L6-v2 sentence embeddings.

TEXT (TYPE_STRING [1]) -> TEXT_EMBEDDING (FP32 [384], mean-pooled and L2-normalised, as
sentence-transformers computes it). Tokenisation happens here, with `tokenizers`.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from text_preprocess import TOKENIZER_FILE, embed, load_tokenizer

INPUT_TEXT = "TEXT"
OUTPUT_EMBEDDING = "TEXT_EMBEDDING"


def _parameter(args: dict[str, Any], name: str, default: str) -> str:
    parameters = json.loads(args["model_config"]).get("parameters", {})
    return str(parameters.get(name, {}).get("string_value", default))


def _onnx_session(path: Path, args: dict[str, Any]) -> ort.InferenceSession:
    """CUDA when this onnxruntime build and machine have it, CPU otherwise; the CPU thread
    count comes from the `intra_op_threads` config parameter because models share cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(_parameter(args, "intra_op_threads", "1"))
    options.inter_op_num_threads = 1
    # Off by default: spinning idle threads steal the cores other models' instances need.
    # The text encoder turns it on (config): its runs are long chains of small ops, and
    # waking sleeping threads between them cost ~12% of its throughput (measured, 2 cores).
    spinning = _parameter(args, "allow_spinning", "0")
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    providers: list[Any] = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        device = {"device_id": int(args.get("model_instance_device_id", "0"))}
        providers.insert(0, ("CUDAExecutionProvider", device))
    return ort.InferenceSession(str(path), options, providers=providers)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = load_tokenizer(version_dir / TOKENIZER_FILE)
        self.session = _onnx_session(version_dir / "model.onnx", args)

    def execute(self, requests: list[Any]) -> list[Any]:
        # Dynamic batching hands over several requests: encode all their rows together.
        batches = [
            pb_utils.get_input_tensor_by_name(request, INPUT_TEXT).as_numpy().reshape(-1)
            for request in requests
        ]
        texts = [value.decode("utf-8", errors="replace") for batch in batches for value in batch]
        embeddings = embed(lambda feeds: self.session.run(None, feeds)[0], self.tokenizer, texts)
        responses = []
        offsets = np.cumsum([0] + [len(batch) for batch in batches])
        for start, end in itertools.pairwise(offsets):
            output = pb_utils.Tensor(OUTPUT_EMBEDDING, embeddings[start:end])
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
