"""Image inputs of the vision and distance services: the bundled sample photos, bounded decodes, headers.

Every decode runs inside a CPU pool job (the caller's ``await state.cpu.run(...)`` or ``run_sync``) and
holds one of ``state.decode_slots`` while it runs, so at most ``decode_concurrency`` decodes are in memory
at once whatever the number of requests; each is reduced to what the models need (see app/images.py).
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache

from app.images import DecodedImage, ImageError, content_hash, decode_image, image_size
from app.settings import Settings
from models.vision.samples import SAMPLE_NAMES


@lru_cache(maxsize=1)
def sample_bytes() -> dict[str, bytes]:
    """scikit-image's bundled photos as JPEG bytes (the same bytes every time, so hashes are stable)."""
    from models.vision.samples import sample_images

    out = {}
    for name, img in sample_images().items():
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=92)
        out[name] = buf.getvalue()
    return out


@lru_cache(maxsize=1)
def sample_hashes() -> dict[str, str]:
    """sha256 of each sample's JPEG bytes."""
    return {name: content_hash(data) for name, data in sample_bytes().items()}


def sample_names() -> tuple[str, ...]:
    return SAMPLE_NAMES


def decode_bounded(data: bytes, settings: Settings, slots: threading.BoundedSemaphore) -> DecodedImage:
    """Decode under one of the decode slots (call from a CPU pool job, never from the event loop)."""
    with slots:
        return decode_image(data, settings.limits.max_image_pixels, settings.limits.min_image_side)


def header_size(name: str, fp: io.IOBase, settings: Settings) -> tuple[int, int]:
    """(width, height) of an upload from its header alone; :class:`ImageError` naming ``name`` when it is
    not an accepted image, is over the pixel limit or is too small."""
    try:
        w, h = image_size(fp, settings.limits.max_image_pixels)
    except ImageError as e:
        raise ImageError(f"{name}: {e}", e.status) from e
    if min(w, h) < settings.limits.min_image_side:
        side = settings.limits.min_image_side
        raise ImageError(f"{name}: the image is only {w}x{h} pixels; it must be at least {side}x{side}.")
    return w, h
