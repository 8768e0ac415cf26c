"""item_embedder and its encoders on the real tritonserver, against in-process references:
sentence-transformers for text, PyTorch EfficientNet-Lite0 / aiSFX / FusionModel (the
committed trained weights) for the rest."""

from __future__ import annotations

import io
import random
import wave
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from sentence_transformers import SentenceTransformer

from models.export import version_dirs
from models.fusion import MODALITY_DIMS
from models.reference import REPO_DIR, ReferenceEmbedder, load_fusion, minilm_dir
from worker.triton import (
    EMBEDDING_DIM,
    ItemContent,
    TritonClient,
    TritonError,
)
from worker.triton_models import (
    AUDIO_MODEL,
    AUDIO_MODEL_INPUT,
    AUDIO_MODEL_OUTPUT_EMBEDDING,
    AUDIO_MODEL_OUTPUT_ERROR,
    FUSION_MODEL,
    FUSION_MODEL_INPUT_AUDIO,
    FUSION_MODEL_INPUT_IMAGE,
    FUSION_MODEL_INPUT_IMAGE_TEXT,
    FUSION_MODEL_INPUT_MASK,
    FUSION_MODEL_INPUT_TEXT,
    FUSION_MODEL_OUTPUT,
    IMAGE_MODEL,
    IMAGE_MODEL_INPUT,
    IMAGE_MODEL_OUTPUT_EMBEDDING,
    IMAGE_MODEL_OUTPUT_ERROR,
    IMAGE_MODEL_OUTPUT_LOGITS,
    IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING,
    TEXT_MODEL,
    TEXT_MODEL_INPUT,
    TEXT_MODEL_OUTPUT,
)

pytestmark = pytest.mark.integration

MIN_COSINE = 0.999
TEXTS = [
    "Wireless noise-cancelling headphones with 30 hours of battery life",
    "A cosy mystery novel set in a seaside bakery",
    "Stainless steel chef's knife, 20 cm blade",
    "Lo-fi beats to study and relax to",
    "Trail running shoes, waterproof, size 42",
    "Ünïcödé façade — naïve café ☕ 東京",
    # Longer than the 128-token limit: both sides must truncate the same way.
    " ".join(["a long product description that keeps going"] * 40),
]


def drawn_image(seed: int, fmt: str) -> bytes:
    """A random composition of shapes, encoded as `fmt` (JPEG, PNG, WEBP)."""
    rng = random.Random(seed)
    size = (rng.randint(160, 640), rng.randint(160, 480))

    def colour() -> tuple[int, int, int]:
        return (rng.randrange(256), rng.randrange(256), rng.randrange(256))

    image = Image.new("RGB", size, colour())
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        box = sorted(rng.sample(range(size[0]), 2)), sorted(rng.sample(range(size[1]), 2))
        corners = (box[0][0], box[1][0], box[0][1], box[1][1])
        shape = rng.choice([draw.ellipse, draw.rectangle])
        shape(corners, fill=colour(), outline=colour(), width=3)
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=90) if fmt in ("JPEG", "WEBP") else image.save(buffer, fmt)
    return buffer.getvalue()


def tone_wav(seed: int, *, rate: int = 44100, seconds: float = 3.0, channels: int = 1) -> bytes:
    """A few decaying sine partials plus noise, as 16-bit PCM WAV."""
    rng = np.random.default_rng(seed)
    times = np.arange(int(rate * seconds)) / rate
    signal = sum(
        np.sin(2 * np.pi * rng.uniform(80, 4000) * times) * np.exp(-times * rng.uniform(0.1, 3))
        for _ in range(4)
    )
    signal = signal + 0.05 * rng.standard_normal(times.size)
    samples = (signal / np.abs(signal).max() * 0.8 * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.repeat(samples, channels).tobytes())
    return buffer.getvalue()


IMAGES = [drawn_image(seed, fmt) for seed, fmt in enumerate(["JPEG", "PNG", "WEBP", "JPEG"])]
CLIPS = [tone_wav(0), tone_wav(1, rate=22050, channels=2), tone_wav(2, seconds=0.5)]
CORRUPT_IMAGES = [
    b"definitely not an image",
    IMAGES[0][: len(IMAGES[0]) // 2],  # truncated JPEG
]


def strings(values: Sequence[bytes]) -> np.ndarray:
    column = np.empty((len(values), 1), dtype=np.object_)
    column[:, 0] = values
    return column


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_unit_rows(vectors: np.ndarray) -> None:
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def reference() -> ReferenceEmbedder:
    return ReferenceEmbedder()


# --- the encoders on their own -----------------------------------------------------------


async def test_text_encoder_matches_sentence_transformers(triton_client: TritonClient) -> None:
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    model.max_seq_length = 128  # the Triton tokenizer's limit (the package default is 256)
    expected = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = await triton_client.infer(
        TEXT_MODEL, {TEXT_MODEL_INPUT: strings([t.encode() for t in TEXTS])}, [TEXT_MODEL_OUTPUT]
    )
    embeddings = got[TEXT_MODEL_OUTPUT]
    assert embeddings.shape == (len(TEXTS), 384)
    assert row_cosines(embeddings, expected).min() >= MIN_COSINE
    assert_unit_rows(embeddings)


async def test_image_encoder_matches_torch(
    triton_client: TritonClient, reference: ReferenceEmbedder
) -> None:
    outputs = [
        IMAGE_MODEL_OUTPUT_EMBEDDING,
        IMAGE_MODEL_OUTPUT_LOGITS,
        IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING,
        IMAGE_MODEL_OUTPUT_ERROR,
    ]
    got = await triton_client.infer(IMAGE_MODEL, {IMAGE_MODEL_INPUT: strings(IMAGES)}, outputs)
    embeddings, logits, text_space = reference.encode_images(IMAGES)
    assert got[IMAGE_MODEL_OUTPUT_ERROR].reshape(-1).tolist() == [b""] * len(IMAGES)
    assert row_cosines(got[IMAGE_MODEL_OUTPUT_EMBEDDING], embeddings).min() >= MIN_COSINE
    assert row_cosines(got[IMAGE_MODEL_OUTPUT_LOGITS], logits).min() >= MIN_COSINE
    assert (got[IMAGE_MODEL_OUTPUT_LOGITS].argmax(axis=1) == logits.argmax(axis=1)).all()
    # The text-space embedding: the reference builds the class-name table with PyTorch
    # MiniLM itself, so this also checks the table export wrote for Triton.
    assert row_cosines(got[IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING], text_space).min() >= MIN_COSINE
    assert_unit_rows(got[IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING])


async def test_an_image_lands_in_the_text_space_near_its_class_names(
    triton_client: TritonClient, reference: ReferenceEmbedder
) -> None:
    """The text-space embedding of an image is closest, among all ImageNet class names, to
    one of the image's own top-5 classes."""
    outputs = [IMAGE_MODEL_OUTPUT_LOGITS, IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING]
    got = await triton_client.infer(IMAGE_MODEL, {IMAGE_MODEL_INPUT: strings(IMAGES)}, outputs)
    nearest_name = (got[IMAGE_MODEL_OUTPUT_TEXT_EMBEDDING] @ reference.class_text().T).argmax(1)
    top5 = np.argsort(-got[IMAGE_MODEL_OUTPUT_LOGITS], axis=1)[:, :5]
    assert all(name in row for name, row in zip(nearest_name, top5, strict=True))


async def test_image_encoder_flags_only_the_corrupt_rows(
    triton_client: TritonClient, reference: ReferenceEmbedder
) -> None:
    batch = [IMAGES[0], *CORRUPT_IMAGES, IMAGES[1]]
    outputs = [IMAGE_MODEL_OUTPUT_EMBEDDING, IMAGE_MODEL_OUTPUT_ERROR]
    got = await triton_client.infer(IMAGE_MODEL, {IMAGE_MODEL_INPUT: strings(batch)}, outputs)
    errors = [error.decode() for error in got[IMAGE_MODEL_OUTPUT_ERROR].reshape(-1)]
    assert errors[0] == errors[3] == ""
    assert all(error.startswith("cannot decode image") for error in errors[1:3])
    embeddings = got[IMAGE_MODEL_OUTPUT_EMBEDDING]
    assert not embeddings[1:3].any()
    expected, _, _ = reference.encode_images([IMAGES[0], IMAGES[1]])
    assert row_cosines(embeddings[[0, 3]], expected).min() >= MIN_COSINE


async def test_audio_encoder_matches_torch(
    triton_client: TritonClient, reference: ReferenceEmbedder
) -> None:
    batch = [*CLIPS, b"RIFF not really a wav"]
    outputs = [AUDIO_MODEL_OUTPUT_EMBEDDING, AUDIO_MODEL_OUTPUT_ERROR]
    got = await triton_client.infer(AUDIO_MODEL, {AUDIO_MODEL_INPUT: strings(batch)}, outputs)
    errors = [error.decode() for error in got[AUDIO_MODEL_OUTPUT_ERROR].reshape(-1)]
    assert errors[: len(CLIPS)] == [""] * len(CLIPS)
    assert errors[-1].startswith("cannot decode WAV")
    embeddings = got[AUDIO_MODEL_OUTPUT_EMBEDDING]
    assert not embeddings[-1].any()
    assert row_cosines(embeddings[: len(CLIPS)], reference.encode_audio(CLIPS)).min() >= MIN_COSINE


async def test_fusion_matches_torch_for_every_modality_pattern(triton_client: TritonClient) -> None:
    rng = np.random.default_rng(0)
    text_dim, image_dim, audio_dim = MODALITY_DIMS
    # Every non-empty presence pattern of (text, image, audio), twice.
    mask = np.array([[(row >> m) & 1 for m in range(3)] for row in range(1, 8)] * 2, np.float32)
    inputs = {
        FUSION_MODEL_INPUT_TEXT: rng.standard_normal((len(mask), text_dim)),
        FUSION_MODEL_INPUT_IMAGE_TEXT: rng.standard_normal((len(mask), text_dim)),
        FUSION_MODEL_INPUT_IMAGE: rng.standard_normal((len(mask), image_dim)),
        FUSION_MODEL_INPUT_AUDIO: rng.standard_normal((len(mask), audio_dim)),
    }
    feeds = {name: array.astype(np.float32) for name, array in inputs.items()}
    feeds[FUSION_MODEL_INPUT_MASK] = mask
    got = await triton_client.infer(FUSION_MODEL, feeds, [FUSION_MODEL_OUTPUT])
    order = (
        FUSION_MODEL_INPUT_TEXT,
        FUSION_MODEL_INPUT_IMAGE_TEXT,
        FUSION_MODEL_INPUT_IMAGE,
        FUSION_MODEL_INPUT_AUDIO,
        FUSION_MODEL_INPUT_MASK,
    )
    with torch.inference_mode():
        expected = load_fusion()(*(torch.from_numpy(feeds[name]) for name in order)).numpy()
    assert_unit_rows(got[FUSION_MODEL_OUTPUT])
    assert row_cosines(got[FUSION_MODEL_OUTPUT], expected).min() >= MIN_COSINE


# --- item_embedder: the worker's entry point ----------------------------------------------

CASES = {
    "text-only": [ItemContent(text=text) for text in TEXTS],
    "image-only": [ItemContent(image=image) for image in IMAGES],
    "text+image": [
        ItemContent(text=text, image=image) for text, image in zip(TEXTS, IMAGES, strict=False)
    ],
    "audio-only": [ItemContent(audio=clip) for clip in CLIPS],
    "text+image+audio": [
        ItemContent(text=text, image=image, audio=clip)
        for text, image, clip in zip(TEXTS, IMAGES, CLIPS, strict=False)
    ],
}


def reference_vectors(reference: ReferenceEmbedder, items: Sequence[ItemContent]) -> np.ndarray:
    return reference.embed_items(
        [item.text for item in items],
        [item.image for item in items],
        [item.audio for item in items],
    )


@pytest.mark.parametrize("case", CASES)
async def test_item_vectors_match_the_reference(
    case: str, triton_client: TritonClient, reference: ReferenceEmbedder
) -> None:
    items = CASES[case]
    vectors, errors = await triton_client.embed_items(items)
    assert errors == [None] * len(items)
    assert vectors.shape == (len(items), EMBEDDING_DIM) and vectors.dtype == np.float32
    assert_unit_rows(vectors)
    assert row_cosines(vectors, reference_vectors(reference, items)).min() >= MIN_COSINE


async def test_a_bad_row_leaves_the_rest_of_the_batch_intact(
    triton_client: TritonClient, reference: ReferenceEmbedder
) -> None:
    good = [CASES["text+image"][0], CASES["text-only"][1], CASES["image-only"][2]]
    batch = [
        good[0],
        ItemContent(text="a product whose photo is broken", image=CORRUPT_IMAGES[0]),
        good[1],
        ItemContent(image=CORRUPT_IMAGES[1]),
        ItemContent(audio=b"not a wav file"),
        ItemContent(),
        good[2],
    ]
    vectors, errors = await triton_client.embed_items(batch)
    assert [errors[i] for i in (0, 2, 6)] == [None, None, None]
    assert errors[1] is not None and errors[1].startswith("image: cannot decode image")
    assert errors[3] is not None and errors[3].startswith("image: cannot decode image")
    assert errors[4] is not None and errors[4].startswith("audio: cannot decode WAV")
    assert errors[5] == "no content"
    assert not vectors[[1, 3, 4, 5]].any()
    good_vectors = vectors[[0, 2, 6]]
    assert_unit_rows(good_vectors)
    assert row_cosines(good_vectors, reference_vectors(reference, good)).min() >= MIN_COSINE
    alone, _ = await triton_client.embed_items(good)
    assert row_cosines(good_vectors, alone).min() >= 0.9999


async def test_batches_beyond_max_batch_size_are_split(triton_client: TritonClient) -> None:
    items = [ItemContent(text=f"item number {i}: {TEXTS[i % len(TEXTS)]}") for i in range(200)]
    vectors, errors = await triton_client.embed_items(items)
    assert errors == [None] * len(items)
    assert_unit_rows(vectors)
    first, _ = await triton_client.embed_items(items[:3])
    assert row_cosines(vectors[:3], first).min() >= 0.9999


async def test_model_version_names_every_model_an_item_vector_depends_on(
    triton_client: TritonClient,
) -> None:
    fusion_version = max(version_dirs(REPO_DIR / FUSION_MODEL))
    assert await triton_client.model_version() == (
        "item_embedder:1+text_encoder:1+image_encoder:1+audio_encoder:1+"
        f"fusion:{fusion_version}+user_encoder:1"
    )
    assert triton_client.dim == EMBEDDING_DIM


async def test_failures_surface_as_triton_errors(triton_client: TritonClient) -> None:
    wrong_model = TritonClient(triton_client.url, item_model="no_such_model")
    try:
        with pytest.raises(TritonError, match="no_such_model"):
            await wrong_model.wait_ready(timeout_s=0.5)
        with pytest.raises(TritonError, match="no_such_model"):
            await wrong_model.embed_items([ItemContent(text="anything")])
    finally:
        await wrong_model.close()
    with pytest.raises(TritonError, match="encode_users"):
        await triton_client.encode_users(
            np.zeros((2, 3, EMBEDDING_DIM), np.float32),
            np.zeros((2, 4), np.float32),
            np.zeros((2, 4), np.float32),
        )


async def test_an_unreachable_server_is_a_triton_error(unused_tcp_port: int) -> None:
    client = TritonClient(f"127.0.0.1:{unused_tcp_port}", timeout_s=2.0)
    try:
        with pytest.raises(TritonError, match="no answer from Triton"):
            await client.embed_items([ItemContent(text="anything")])
        with pytest.raises(TritonError, match="not ready"):
            await client.wait_ready(timeout_s=0.3)
    finally:
        await client.close()
