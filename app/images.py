"""Decode untrusted image uploads safely into RGB PIL images, never bigger than the models need.

Only PNG, JPEG, GIF, WebP, BMP and TIFF are opened (Pillow is told the formats, so a text file renamed
.png is refused by content, not by name). Pillow's DecompressionBombWarning is an error here.

Cost. Every model input is at most 448 px a side (resized from a short side of R / crop_pct <= 512), so
an image is reduced until its short side is just above :data:`DRAFT_SIDE` (and its pixel count below
:data:`MAX_DECODED_PIXELS`) BEFORE its mode is converted: JPEGs are decoded at a reduced DCT scale
(``draft``), everything else is box-reduced in its native mode (``reduce``; ``resize`` with a box filter for
16-bit, nearest for palette images). No full-size RGB or float copy of a huge image ever exists; 16-bit,
32-bit and float images are rescaled in float32. Peak memory of one decode is the native decoded image
(w * h * bytes per pixel, at most ``max_pixels`` * 4) plus the reduced copy.

Modes are converted, not rejected: CMYK, 16-bit, palette, RGBA (on white), grayscale. Animated images give
their first frame; EXIF orientation is applied so photos are shown upright, and broken EXIF (an eXIf chunk
that is not TIFF, a "Raw profile type exif" text with bad hex) is ignored.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.services.errors import ImageError  # the error family; re-exported here

log = logging.getLogger("atlas.images")

ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
# Images are reduced by the largest integer factor that keeps the short side >= DRAFT_SIDE (JPEG: the DCT
# scale 1/2, 1/4 or 1/8 that keeps both sides >= it): every model input (<= 448 px) is still resized down.
DRAFT_SIDE = 1024
MAX_DECODED_PIXELS = 4 * DRAFT_SIDE * DRAFT_SIDE  # ... and until at most this many pixels remain
_REDUCE_MODES = ("L", "LA", "I", "F", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_NEAREST_MODES = ("1", "P", "PA")  # averaging palette indices would mix unrelated colours
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, upright, first frame, reduced to what the models need
    content_hash: str  # sha256 of the uploaded bytes
    original_format: str
    original_mode: str
    original_size: tuple[int, int]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _too_big(w: int, h: int, max_pixels: int) -> str:
    return f"The image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,} pixels."


def _open(fp: IO[bytes], max_pixels: int) -> Image.Image:
    """Image.open under the pixel limit, with Pillow's errors turned into :class:`ImageError`.

    Reads the header only (size, mode, format): nothing is decoded yet."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            img = Image.open(fp, formats=list(ACCEPTED_FORMATS))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise ImageError(f"The image is too large to decode safely ({e}).", status=413) from e
        except UnidentifiedImageError as e:
            raise ImageError(
                "This file is not an image we can read. Accepted formats: PNG, JPEG, GIF, WebP, BMP, TIFF.",
                status=415,
            ) from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"The image file is truncated or corrupt and cannot be decoded ({e}).") from e
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(_too_big(w, h, max_pixels), status=413)
    return img


def image_size(fp: IO[bytes], max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header alone (no pixel is decoded); :class:`ImageError` when unreadable,
    not an accepted format, or over ``max_pixels``."""
    with _open(fp, max_pixels) as img:
        return img.size


def reduction_factor(
    size: tuple[int, int], min_side: int = DRAFT_SIDE, max_pixels: int = MAX_DECODED_PIXELS
) -> int:
    """The largest integer factor that keeps the short side >= ``min_side``, raised further (if needed) until
    at most ``max_pixels`` remain; 1 for images that are small already."""
    w, h = size
    factor = max(1, min(w, h) // min_side)
    while (w // factor) * (h // factor) > max_pixels:
        factor += 1
    return factor


def reduce_native(img: Image.Image, factor: int) -> Image.Image:
    """Shrink by ``factor`` in the image's own mode (box average; nearest for palette and bilevel)."""
    if factor <= 1:
        return img
    size = (max(1, img.width // factor), max(1, img.height // factor))
    if img.mode in _REDUCE_MODES:
        return img.reduce(factor)
    if img.mode in _NEAREST_MODES:
        return img.resize(size, Image.Resampling.NEAREST)
    return img.resize(size, Image.Resampling.BOX)  # 16-bit and the rest: box filter, still native mode


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; broken or unreadable EXIF is ignored (the image is used as stored)."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as e:  # noqa: BLE001 - EXIF is metadata: a bad tag must never fail the image
        log.info("ignoring unreadable EXIF (%s: %s)", type(e).__name__, e)
        return img


def decode_image(data: bytes, max_pixels: int, min_side: int) -> DecodedImage:
    """Upload bytes -> :class:`DecodedImage` (RGB, upright, reduced); :class:`ImageError` for bad input."""
    if not data:
        raise ImageError("The upload is empty: choose an image file (PNG, JPEG, GIF, WebP, BMP or TIFF).")
    img = _open(io.BytesIO(data), max_pixels)
    w, h = img.size
    fmt, mode = img.format or "?", img.mode
    if min(w, h) < min_side:
        raise ImageError(f"The image is only {w}x{h} pixels; it must be at least {min_side}x{min_side}.")
    factor = reduction_factor((w, h))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if fmt == "JPEG" and factor > 1:  # decode at a reduced DCT scale: 1/2, 1/4 or 1/8
                target = (w // factor, h // factor)
                img.draft(img.mode if img.mode in ("L", "CMYK") else "RGB", target)
            img.seek(0)
            img.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageError(f"The image is too large to decode safely ({e}).", status=413) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"The image file is truncated or corrupt and cannot be decoded ({e}).") from e
    img = reduce_native(img, reduction_factor(img.size))  # after draft: whatever reduction is left
    rgb = to_rgb(upright(img))
    return DecodedImage(rgb, content_hash(data), fmt, mode, (w, h))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. 16/32-bit and float images are rescaled (not clipped), in float32."""
    if img.mode in _HIGH_DEPTH_MODES:
        arr = np.asarray(img).astype(np.float32)  # (H, W), small: the image is reduced already
        lo, hi = float(arr.min()), float(arr.max())
        if hi > lo:
            arr -= lo
            arr *= 255.0  # before the division: exact for 16-bit values (< 2^24)
            arr /= hi - lo
        else:
            arr[:] = 0
        return Image.fromarray(np.rint(arr).astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
