"""Triton Python model `fusion`: per-modality embeddings + presence mask -> item vector.

TEXT_EMBEDDING [384], IMAGE_TEXT_EMBEDDING [384] (the image in the text space),
IMAGE_EMBEDDING [1280], AUDIO_EMBEDDING [512] and MODALITY_MASK [3] (1.0 = present; text,
image, audio) -> ITEM_VECTOR (FP32 [256], L2-normalised; all zeros for a row whose mask is
empty). The network is `models.fusion.FusionModel` with the weights of this version
(models/weights/fusion-v<version>.pt), exported to ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Triton tensor name -> ONNX graph input name.
INPUTS = {
    "TEXT_EMBEDDING": "text",
    "IMAGE_TEXT_EMBEDDING": "image_text",
    "IMAGE_EMBEDDING": "image",
    "AUDIO_EMBEDDING": "audio",
    "MODALITY_MASK": "mask",
}
OUTPUT_VECTOR = "ITEM_VECTOR"


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


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.session = _onnx_session(version_dir / "model.onnx", args)

    def execute(self, requests: list[Any]) -> list[Any]:
        # Dynamic batching hands over several requests: fuse all their rows in one run.
        feeds = {
            onnx_name: np.concatenate(
                [
                    pb_utils.get_input_tensor_by_name(request, triton_name).as_numpy()
                    for request in requests
                ]
            ).astype(np.float32, copy=False)
            for triton_name, onnx_name in INPUTS.items()
        }
        (vectors,) = self.session.run(None, feeds)
        responses = []
        start = 0
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "MODALITY_MASK").as_numpy().shape[0]
            output = pb_utils.Tensor(OUTPUT_VECTOR, vectors[start : start + rows])
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            start += rows
        return responses
