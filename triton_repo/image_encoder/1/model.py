"""Triton Python model `image_encoder`: encoded image bytes -> EfficientNet-Lite0 outputs.

IMAGE (TYPE_STRING [1], JPEG/PNG/WebP/... bytes) -> IMAGE_EMBEDDING (FP32 [1280], the
globally pooled penultimate features), IMAGE_LOGITS (FP32 [1000], ImageNet classes),
IMAGE_TEXT_EMBEDDING (FP32 [384], the image in the text encoder's space: see image_text.py)
and ERROR (TYPE_STRING [1]: empty, or why this row's image could not be decoded; such a row's
outputs are zeros). Decoding, resizing and normalisation happen here, with Pillow.
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
from image_preprocess import IMAGE_SIZE, ImageDecodeError, preprocess_image
from image_text import CLASS_TEXT_FILE, TEXT_DIM, load_class_text, text_space_embeddings

INPUT_IMAGE = "IMAGE"
OUTPUT_EMBEDDING = "IMAGE_EMBEDDING"
OUTPUT_LOGITS = "IMAGE_LOGITS"
OUTPUT_TEXT_EMBEDDING = "IMAGE_TEXT_EMBEDDING"
OUTPUT_ERROR = "ERROR"
EMBEDDING_DIM = 1280
NUM_CLASSES = 1000


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
        return preprocess_image(data)
    except ImageDecodeError as exc:
        return str(exc)
    except Exception as exc:  # untrusted bytes: any failure is this row's, never the batch's
        return f"cannot decode: {type(exc).__name__}"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.session = _onnx_session(version_dir / "model.onnx", args)
        self.class_text = load_class_text(version_dir / CLASS_TEXT_FILE)
        # Pillow releases the GIL while decoding and resizing, so threads use spare cores.
        self.pool = ThreadPoolExecutor(max_workers=int(_parameter(args, "decode_threads", "2")))

    def execute(self, requests: list[Any]) -> list[Any]:
        # Dynamic batching hands over several requests: decode and encode all rows together.
        batches = [
            pb_utils.get_input_tensor_by_name(request, INPUT_IMAGE).as_numpy().reshape(-1)
            for request in requests
        ]
        decoded = list(self.pool.map(_decode, [data for batch in batches for data in batch]))
        rows = len(decoded)
        embeddings = np.zeros((rows, EMBEDDING_DIM), dtype=np.float32)
        logits = np.zeros((rows, NUM_CLASSES), dtype=np.float32)
        text_space = np.zeros((rows, TEXT_DIM), dtype=np.float32)
        errors = np.array([b""] * rows, dtype=np.object_)
        good = [i for i, item in enumerate(decoded) if isinstance(item, np.ndarray)]
        for i, item in enumerate(decoded):
            if isinstance(item, str):
                errors[i] = item.encode("utf-8")
        if good:
            pixels = np.empty((len(good), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
            for slot, i in enumerate(good):
                pixels[slot] = decoded[i]
            embeddings[good], logits[good] = self.session.run(None, {"image": pixels})
            text_space[good] = text_space_embeddings(logits[good], self.class_text)
        responses = []
        offsets = np.cumsum([0] + [len(batch) for batch in batches])
        for start, end in itertools.pairwise(offsets):
            outputs = [
                pb_utils.Tensor(OUTPUT_EMBEDDING, embeddings[start:end]),
                pb_utils.Tensor(OUTPUT_LOGITS, logits[start:end]),
                pb_utils.Tensor(OUTPUT_TEXT_EMBEDDING, text_space[start:end]),
                pb_utils.Tensor(OUTPUT_ERROR, errors[start:end].reshape(-1, 1)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def finalize(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
