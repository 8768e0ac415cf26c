"""Image decoding and normalisation for the EfficientNet-Lite0 image encoder.

Imported by this model's `model.py` inside Triton and by `models.reference` in-process, so
both paths feed the network identical pixels. Keep it free of project imports.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SIZE = 224
# EfficientNet-Lite was trained with TF's (pixel - 127) / 128 scaling, not ImageNet mean/std.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
# Larger images are rejected before decoding: a hostile header can claim gigapixels.
MAX_IMAGE_PIXELS = 50_000_000


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image; the message says why."""


def preprocess_image(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG/WebP/... bytes -> float32 [3, IMAGE_SIZE, IMAGE_SIZE]."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageDecodeError(f"image too large: {image.width}x{image.height}")
            # JPEG only: decode at a reduced scale that still covers IMAGE_SIZE (much
            # faster for big photos); a no-op for other formats.
            image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))
            image = ImageOps.exif_transpose(image).convert("RGB")
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:  # its message embeds a BytesIO repr
        raise ImageDecodeError("cannot decode image: unrecognised image format") from exc
    # Untrusted bytes reach codec plugins that raise many exception types; every one of
    # them means "this row's image is bad", never "fail the batch".
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    # Scale the shorter side to IMAGE_SIZE and centre-crop the other.
    image = ImageOps.fit(image, (IMAGE_SIZE, IMAGE_SIZE), method=Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    return ((pixels - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1).copy()
