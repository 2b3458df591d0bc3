"""Image sets for dataset jobs (distance, feature sets): uploads checked from their headers, then decoded one at a time in the job.

:func:`app.services.uploads.parse_uploads` (CPU pool) reads only zip central directories and image headers
(no pixel is decoded) and refuses a set over its pixel budget with 413 at once (re-exported here).
:class:`UploadedImages` decodes each image when the job reaches it (cancellable), in the CPU pool under the
decode slots; :class:`SampleImages` are the bundled photos.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import lru_cache

from PIL import Image

from app.backend.local import wait_for_room
from app.images import ImageError
from app.jobs import UserError
from app.services.images import decode_bounded
from app.services.uploads import (  # noqa: F401 (re-exported for the distance service)
    MAX_FILES,
    MAX_IMAGES,
    ParsedUploads,
    parse_uploads,
    pixel_budget,
)
from app.settings import Settings
from app.state import AppState
from models.vision.samples import SAMPLE_NAMES, sample_images


@lru_cache(maxsize=1)
def sample_list() -> tuple[Image.Image, ...]:
    """The bundled sample photos, decoded once per process."""
    return tuple(sample_images().values())


class UploadedImages(Sequence[Image.Image]):
    """Checked uploads, decoded one at a time when the job reaches them (CPU pool, decode slots)."""

    def __init__(self, state: AppState, parsed: ParsedUploads, cancel: threading.Event) -> None:
        self.names, self._loaders = parsed.names, parsed.loaders
        self._state, self._cancel = state, cancel

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        state, name = self._state, self.names[index]
        try:
            decoded = wait_for_room(
                lambda: state.cpu.run_sync(
                    _load_and_decode, self._loaders[index], state.settings, state.decode_slots
                ),
                self._cancel,
                "the CPU pool",
            )
        except ImageError as e:
            raise UserError(f"{name}: {e}") from e
        return decoded  # type: ignore[return-value]


def _load_and_decode(
    load: Callable[[], bytes], settings: Settings, slots: threading.BoundedSemaphore
) -> Image.Image:
    return decode_bounded(load(), settings, slots).image


class SampleImages(Sequence[Image.Image]):
    """The bundled photos, loaded (once per process) when the job first needs one."""

    def __len__(self) -> int:
        return len(SAMPLE_NAMES)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        return sample_list()[index]


def set_key(parsed: ParsedUploads | None) -> str:
    """The image set's part of a job key: the samples, or the uploads' content digest."""
    return "samples" if parsed is None else parsed.digest


def set_names(parsed: ParsedUploads | None) -> list[str]:
    """The names of the set's images, in job order."""
    return list(SAMPLE_NAMES) if parsed is None else list(parsed.names)


def job_images(
    state: AppState, parsed: ParsedUploads | None, cancel: threading.Event
) -> Sequence[Image.Image]:
    """The set's images as the job reads them: the bundled photos, or the uploads decoded one at a time."""
    return SampleImages() if parsed is None else UploadedImages(state, parsed, cancel)
