"""The encoders' decoders on hostile bytes: every failure is a clear per-row error, decided
from the header where it can be, before any pixels or samples are decoded."""

from __future__ import annotations

import gzip
import io
import struct
import wave

import numpy as np
import pytest
from PIL import Image

from models.reference import load_repo_module

images = load_repo_module("image_preprocess")
audio = load_repo_module("audio_preprocess")


def _png(size: tuple[int, int], mode: str = "1") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _wav(rate: int, frames: int, claimed: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.zeros(frames, dtype="<i2").tobytes())
    data = buffer.getvalue()
    if claimed is not None:  # a header that promises more samples than follow
        data = data[:40] + struct.pack("<I", claimed * 2) + data[44:]
    return data


def test_a_png_bomb_is_refused_from_its_header() -> None:
    bomb = _png((7072, 7072))  # 50 Mpx of 1-bit pixels: a few KB compressed
    assert len(bomb) < 200_000
    with pytest.raises(images.ImageDecodeError, match="image too large: 7072x7072 PNG"):
        images.preprocess_image(bomb)


@pytest.mark.parametrize(
    "data",
    [
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
        gzip.compress(b"\0" * 10_000_000),
        b"BM" + b"\0" * 100,  # BMP: Pillow knows it, the encoder does not take it
    ],
)
def test_formats_outside_the_allow_list_never_reach_a_decoder(data: bytes) -> None:
    with pytest.raises(images.ImageDecodeError, match="accepted formats"):
        images.preprocess_image(data)


def test_accepted_images_still_decode() -> None:
    pixels = images.preprocess_image(_png((640, 480), "RGB"))
    assert pixels.shape == (3, images.IMAGE_SIZE, images.IMAGE_SIZE)


def test_a_truncated_wav_is_refused() -> None:
    with pytest.raises(audio.AudioDecodeError, match="truncated"):
        audio.decode_wav(_wav(16000, 100, claimed=1_000_000))


@pytest.mark.parametrize("rate", [1, 4_000_000])
def test_an_extreme_sample_rate_is_refused_from_the_header(rate: int) -> None:
    with pytest.raises(audio.AudioDecodeError, match="sample rate"):
        audio.decode_wav(_wav(rate, 100))


def test_a_normal_wav_still_decodes() -> None:
    assert audio.decode_wav(_wav(16000, 16000)).size == audio.SAMPLE_RATE
