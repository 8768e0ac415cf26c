"""The served item path in-process: the model repository's ONNX files and preprocessing
modules run with onnxruntime, no Triton in between.

The training and evaluation of the fusion read their features from here, so they measure the
encoders exactly as they are served; the ingestion benchmark times it as the ceiling the
Triton path is compared with. (`models.reference` is the independent PyTorch check.)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.export import ONNX_FILE, version_dirs
from models.fusion import MODALITY_DIMS
from models.reference import REPO_DIR, load_repo_module


@dataclass(frozen=True)
class Features:
    """Fusion's inputs for n items; rows of an absent modality are zeros."""

    text: np.ndarray  # [n, 384]
    image_text: np.ndarray  # [n, 384]
    image: np.ndarray  # [n, 1280]
    audio: np.ndarray  # [n, 512]
    mask: np.ndarray  # [n, 3] float32: text, image, audio present

    def rows(self, index: np.ndarray) -> Features:
        return Features(*(array[index] for array in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.text, self.image_text, self.image, self.audio, self.mask)


def latest_version_dir(repo_dir: Path, model: str) -> Path:
    versions = version_dirs(repo_dir / model)
    if not versions:
        raise FileNotFoundError(f"no version of {model} under {repo_dir}")
    return versions[max(versions)]


class OnnxItemEmbedder:
    """Raw item content -> features -> item vectors, as item_embedder computes them.
    Sessions open on first use; `threads` is onnxruntime's intra-op thread count."""

    def __init__(self, repo_dir: Path = REPO_DIR, *, threads: int = 2) -> None:
        self.repo_dir = repo_dir
        self.threads = threads
        self.text_preprocess = load_repo_module("text_preprocess", repo_dir)
        self.image_preprocess = load_repo_module("image_preprocess", repo_dir)
        self.image_text = load_repo_module("image_text", repo_dir)
        self.audio_preprocess = load_repo_module("audio_preprocess", repo_dir)
        text_dir = latest_version_dir(repo_dir, "text_encoder")
        self.tokenizer = self.text_preprocess.load_tokenizer(
            text_dir / self.text_preprocess.TOKENIZER_FILE
        )
        image_dir = latest_version_dir(repo_dir, "image_encoder")
        self.class_text = self.image_text.load_class_text(
            image_dir / self.image_text.CLASS_TEXT_FILE
        )
        self._sessions: dict[str, ort.InferenceSession] = {}

    def session(self, model: str) -> ort.InferenceSession:
        if model not in self._sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            path = latest_version_dir(self.repo_dir, model) / ONNX_FILE
            self._sessions[model] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[model]

    def _run(self, model: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session(model).run(None, feeds)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_preprocess.embed(
            lambda feeds: self._run("text_encoder", feeds)[0], self.tokenizer, texts
        )

    def encode_images(self, images: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """-> (features [n, 1280], text-space embeddings [n, 384]); raises ImageDecodeError."""
        pixels = np.stack([self.image_preprocess.preprocess_image(data) for data in images])
        embedding, logits = self._run("image_encoder", {"image": pixels})
        return embedding, self.image_text.text_space_embeddings(logits, self.class_text)

    def encode_audio(self, clips: Sequence[bytes]) -> np.ndarray:
        """-> mean block embedding per clip [n, 512]; raises AudioDecodeError."""
        blocks = [self.audio_preprocess.preprocess_audio(data) for data in clips]
        (embeddings,) = self._run("audio_encoder", {"spectrogram": np.concatenate(blocks)})
        bounds = np.cumsum([0, *(len(clip) for clip in blocks)])
        return np.stack([embeddings[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])

    def features(
        self,
        texts: Sequence[str | None],
        images: Sequence[bytes | None],
        audio: Sequence[bytes | None],
    ) -> Features:
        rows = len(texts)
        if len(images) != rows or len(audio) != rows:
            raise ValueError("texts, images and audio must have one entry per item")
        text_dim, image_dim, audio_dim = MODALITY_DIMS
        out = Features(
            text=np.zeros((rows, text_dim), dtype=np.float32),
            image_text=np.zeros((rows, text_dim), dtype=np.float32),
            image=np.zeros((rows, image_dim), dtype=np.float32),
            audio=np.zeros((rows, audio_dim), dtype=np.float32),
            mask=np.zeros((rows, 3), dtype=np.float32),
        )
        has_text = [i for i, text in enumerate(texts) if text]
        has_image = [i for i, image in enumerate(images) if image]
        has_audio = [i for i, clip in enumerate(audio) if clip]
        if has_text:
            out.text[has_text] = self.encode_texts([texts[i] or "" for i in has_text])
        if has_image:
            out.image[has_image], out.image_text[has_image] = self.encode_images(
                [images[i] or b"" for i in has_image]
            )
        if has_audio:
            out.audio[has_audio] = self.encode_audio([audio[i] or b"" for i in has_audio])
        for column, present in enumerate((has_text, has_image, has_audio)):
            out.mask[present, column] = 1.0
        return out

    def fuse(self, features: Features) -> np.ndarray:
        names = ("text", "image_text", "image", "audio", "mask")
        (vectors,) = self._run("fusion", dict(zip(names, features.arrays(), strict=True)))
        return vectors

    def embed_items(
        self,
        texts: Sequence[str | None],
        images: Sequence[bytes | None],
        audio: Sequence[bytes | None],
    ) -> np.ndarray:
        """-> item vectors [n, 256]."""
        return self.fuse(self.features(texts, images, audio))
