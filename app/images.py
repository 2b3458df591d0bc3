"""Decode untrusted image uploads safely into RGB PIL images.

Only PNG, JPEG, GIF, WebP, BMP and TIFF are opened (Pillow is told the formats, so a text file renamed
.png is refused by content, not by name). Pillow's DecompressionBombWarning is an error here. Modes are
converted, not rejected: CMYK, 16-bit, palette, RGBA (on white), grayscale. Animated images give their
first frame; EXIF orientation is applied so photos are shown upright.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
# JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both sides >= this: a 12-megapixel
# photo decodes several times faster, and every model input (<= 448 px) is still resized down from it.
DRAFT_SIDE = 1024


class ImageError(ValueError):
    """A user-facing problem with an upload; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, upright, first frame
    content_hash: str  # sha256 of the uploaded bytes
    original_format: str
    original_mode: str
    original_size: tuple[int, int]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, max_pixels: int, min_side: int) -> DecodedImage:
    if not data:
        raise ImageError("The upload is empty: choose an image file (PNG, JPEG, GIF, WebP, BMP or TIFF).")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            img = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(_too_big(w, h, max_pixels), status=413)
            fmt, mode = img.format or "?", img.mode
            if fmt == "JPEG":  # decode big photos at a reduced scale: models see at most DRAFT_SIDE pixels
                img.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))
            img.seek(0)
            img.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise ImageError(f"The image is too large to decode safely ({e}).", status=413) from e
        except UnidentifiedImageError as e:
            raise ImageError(
                "This file is not an image we can read. Accepted formats: PNG, JPEG, GIF, WebP, BMP, TIFF.",
                status=415,
            ) from e
        except ImageError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"The image file is truncated or corrupt and cannot be decoded ({e}).") from e
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    if min(w, h) < min_side:
        raise ImageError(f"The image is only {w}x{h} pixels; it must be at least {min_side}x{min_side}.")
    rgb = to_rgb(ImageOps.exif_transpose(img))
    return DecodedImage(rgb, content_hash(data), fmt, mode, (w, h))


def _too_big(w: int, h: int, max_pixels: int) -> str:
    return f"The image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,} pixels."


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. 16/32-bit and float images are rescaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.round().astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
