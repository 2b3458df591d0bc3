"""Image sets for distance jobs: uploads checked from their headers, then decoded one at a time in the job.

:func:`parse_uploads` (CPU pool) reads only zip central directories and image headers (no pixel is
decoded) and refuses a set over its pixel budget (:func:`pixel_budget`) with 413 at once.
:class:`UploadedImages` decodes each image when the job reaches it (cancellable), in the CPU pool under the
decode slots; :class:`SampleImages` are the bundled photos.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image

from app.backend.local import wait_for_room
from app.images import ImageError
from app.jobs import UserError
from app.services.images import decode_bounded, header_size
from app.settings import Settings
from app.state import AppState
from models.vision.samples import IMAGE_SUFFIXES, SAMPLE_NAMES, sample_images

MAX_FILES = 64  # multipart file parts per job
MAX_IMAGES = 256  # images per job, zips expanded
MAX_UNCOMPRESSED_FACTOR = 4  # a zip's image members may total at most this times the upload limit
ZIP_SUFFIXES = (*IMAGE_SUFFIXES, ".gif", ".tif", ".tiff")


def pixel_budget(settings: Settings) -> int:
    """Pixels one image-set job may decode in all, from the images' headers."""
    return settings.max_job_megapixels * 1_000_000


@lru_cache(maxsize=1)
def sample_list() -> tuple[Image.Image, ...]:
    """The bundled sample photos, decoded once per process."""
    return tuple(sample_images().values())


@dataclass
class ParsedUploads:
    """Uploads checked from their headers: names, byte loaders, header pixels, and a content digest."""

    names: list[str] = field(default_factory=list)
    loaders: list[Callable[[], bytes]] = field(default_factory=list)
    pixels: int = 0
    digest: str = ""


def _zip_members(name: str, data: bytes, settings: Settings) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """The image members of a zip, from its central directory (sizes and counts checked, nothing read)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except UnicodeDecodeError as e:
        raise ImageError(
            f"{name}: a member name is flagged as UTF-8 but is not valid UTF-8 ({e.reason} at byte "
            f"{e.start}); re-create the zip with UTF-8 names."
        ) from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise ImageError(f"{name}: not a readable zip file ({e}).") from e
    members = [
        i
        for i in zf.infolist()
        if not i.is_dir()
        and "__MACOSX/" not in i.filename
        and not i.filename.rsplit("/", 1)[-1].startswith(".")
        and i.filename.lower().endswith(ZIP_SUFFIXES)
    ]
    if not members:
        raise ImageError(f"{name} contains no images ({', '.join(s[1:] for s in ZIP_SUFFIXES)}).")
    if len(members) > MAX_IMAGES:
        raise ImageError(f"{name} holds {len(members)} images: a job takes at most {MAX_IMAGES}.")
    limit = settings.max_upload_bytes
    for info in members:
        if info.file_size > limit:
            raise ImageError(f"{name}/{info.filename} is larger than {settings.max_upload_mb:g} MB.", 413)
    if sum(i.file_size for i in members) > MAX_UNCOMPRESSED_FACTOR * limit:
        raise ImageError(
            f"{name} expands to more than {MAX_UNCOMPRESSED_FACTOR * settings.max_upload_mb:g} MB of images.",
            413,
        )
    return zf, sorted(members, key=lambda i: i.filename)


def _member_loader(zip_name: str, data: bytes, member: str) -> Callable[[], bytes]:
    def read() -> bytes:  # reads at most the declared size; a lying header fails its CRC check
        try:
            return zipfile.ZipFile(io.BytesIO(data)).read(member)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError, zlib.error) as e:
            raise ImageError(f"{zip_name}/{member} cannot be extracted ({e}).") from e

    return read


def parse_uploads(files: list[tuple[str, bytes]], settings: Settings) -> ParsedUploads:
    """Check an image set from zip directories and image headers only (CPU pool; nothing is decoded).

    :class:`ImageError` naming the file: 400 (no files, too many, bad zip or name, unreadable header),
    413 (a member over the size limit, a set over its pixel budget), 415 (not an image)."""
    if not files:
        raise ImageError("Choose one or more image files, or a zip of images, to upload.")
    if len(files) > MAX_FILES:
        raise ImageError(f"Too many files ({len(files)}): send at most {MAX_FILES}, or one zip.")
    budget = pixel_budget(settings)
    out = ParsedUploads()
    digest = hashlib.sha256()

    def add(name: str, fp: io.IOBase, loader: Callable[[], bytes]) -> None:
        w, h = header_size(name, fp, settings)
        out.pixels += w * h
        if out.pixels > budget:
            raise ImageError(
                f"The images total more than {budget:,} pixels (at {name}); that is the most one job may "
                "decode. Send fewer or smaller images.",
                413,
            )
        out.names.append(name)
        out.loaders.append(loader)

    for name, data in files:
        digest.update(hashlib.sha256(data).digest())
        if zipfile.is_zipfile(io.BytesIO(data)) or name.lower().endswith(".zip"):
            zf, members = _zip_members(name, data, settings)
            if len(out.names) + len(members) > MAX_IMAGES:
                raise ImageError(f"Too many images: a job takes at most {MAX_IMAGES}.")
            for info in members:
                member = f"{name}/{info.filename}"
                try:
                    with zf.open(info) as fp:  # the header's first bytes only
                        add(member, fp, _member_loader(name, data, info.filename))
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as e:
                    raise ImageError(f"{member} cannot be extracted ({e}).") from e
        else:
            if len(out.names) + 1 > MAX_IMAGES:
                raise ImageError(f"Too many images: a job takes at most {MAX_IMAGES}.")
            add(name, io.BytesIO(data), lambda d=data: d)
    out.digest = digest.hexdigest()
    return out


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
