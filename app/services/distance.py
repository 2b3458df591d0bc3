"""Attention distance for an analysis and for image sets (dataset jobs)."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image

from models.vision.samples import sample_images

MAX_FILES = 64  # multipart file parts per job
MAX_IMAGES = 256  # images per job, zips expanded


@lru_cache(maxsize=1)
def sample_list() -> tuple[Image.Image, ...]:
    """The bundled sample photos, decoded once per process."""
    return tuple(sample_images().values())
