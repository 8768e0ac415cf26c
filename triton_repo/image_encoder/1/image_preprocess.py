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
# Larger images are rejected from their header, before decoding: a hostile header can claim
# gigapixels. JPEGs decode at a reduced scale (draft mode), so they may be larger than images
# that must be decoded whole (a 16 Mpx PNG is 64 MB of pixels, per decode thread).
MAX_IMAGE_PIXELS = 50_000_000
MAX_FULL_DECODE_PIXELS = 16_000_000
# Only these decoders ever see untrusted bytes (no EPS, which runs Ghostscript, nor the
# dozens of rarely used formats Pillow would otherwise try). GIF: the first frame.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image; the message says why."""


def preprocess_image(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG/WebP/... bytes -> float32 [3, IMAGE_SIZE, IMAGE_SIZE]."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            pixels = image.width * image.height
            limit = MAX_IMAGE_PIXELS if image.format == "JPEG" else MAX_FULL_DECODE_PIXELS
            if pixels > limit:
                raise ImageDecodeError(
                    f"image too large: {image.width}x{image.height} {image.format} "
                    f"(at most {limit} pixels)"
                )
            # JPEG only: decode at a reduced scale that still covers IMAGE_SIZE (much
            # faster for big photos); a no-op for other formats.
            image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))
            image = ImageOps.exif_transpose(image).convert("RGB")
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:  # its message embeds a BytesIO repr
        raise ImageDecodeError(
            f"cannot decode image: not one of the accepted formats {', '.join(FORMATS)}"
        ) from exc
    # Untrusted bytes reach codec plugins that raise many exception types; every one of
    # them means "this row's image is bad", never "fail the batch".
    except Exception as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    # Scale the shorter side to IMAGE_SIZE and centre-crop the other.
    image = ImageOps.fit(image, (IMAGE_SIZE, IMAGE_SIZE), method=Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    return ((pixels - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1).copy()
