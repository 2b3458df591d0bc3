"""Image sets for dataset jobs, checked from zip directories and image headers only (nothing is decoded).

:func:`parse_uploads` runs in the CPU pool. It refuses, naming the file: too many files or images, a zip
that is not readable, a member over the size limit, a zip that expands too far, a member name that occurs
twice in one zip (members load by their own directory entry, so each image is counted once and loaded as
counted), an image that is not one, and a set over its pixel budget (:func:`pixel_budget`, 413). The
loaders it returns read exactly the member whose header was counted.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from app.images import ImageError
from app.services.images import header_size
from app.settings import Settings
from models.vision.samples import IMAGE_SUFFIXES

MAX_FILES = 64  # multipart file parts per job
MAX_IMAGES = 256  # images per job, zips expanded
MAX_UNCOMPRESSED_FACTOR = 4  # a zip's image members may total at most this times the upload limit
ZIP_SUFFIXES = (*IMAGE_SUFFIXES, ".gif", ".tif", ".tiff")
ZIP_ERRORS = (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError, zlib.error)


def pixel_budget(settings: Settings) -> int:
    """Pixels one image-set job may decode in all, from the images' headers."""
    return settings.limits.max_job_megapixels * 1_000_000


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
    seen: set[str] = set()
    for info in zf.infolist():  # every entry: a later entry of a name shadows an earlier one when read
        if info.filename in seen:
            raise ImageError(
                f"{name} holds {info.filename} twice; re-create the zip with one entry per name.", 400
            )
        seen.add(info.filename)
    if len(members) > MAX_IMAGES:
        raise ImageError(f"{name} holds {len(members)} images: a job takes at most {MAX_IMAGES}.")
    limit = settings.limits.max_upload_bytes
    for info in members:
        if info.file_size > limit:
            raise ImageError(
                f"{name}/{info.filename} is larger than {settings.limits.max_upload_mb:g} MB.", 413
            )
    if sum(i.file_size for i in members) > MAX_UNCOMPRESSED_FACTOR * limit:
        raise ImageError(
            f"{name} expands to more than {MAX_UNCOMPRESSED_FACTOR * settings.limits.max_upload_mb:g} MB of images.",
            413,
        )
    return zf, sorted(members, key=lambda i: i.filename)


def _member_loader(zip_name: str, data: bytes, member: zipfile.ZipInfo) -> Callable[[], bytes]:
    """Reads the entry at ``member``'s own header offset (never another entry of the same name), at most
    its declared size; a lying header fails its CRC check."""
    offset, filename = member.header_offset, member.filename

    def read() -> bytes:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            info = next(i for i in zf.infolist() if i.header_offset == offset)
            return zf.read(info)
        except (*ZIP_ERRORS, StopIteration) as e:
            raise ImageError(f"{zip_name}/{filename} cannot be extracted ({e}).") from e

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
                        add(member, fp, _member_loader(name, data, info))
                except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as e:
                    raise ImageError(f"{member} cannot be extracted ({e}).") from e
        else:
            if len(out.names) + 1 > MAX_IMAGES:
                raise ImageError(f"Too many images: a job takes at most {MAX_IMAGES}.")
            add(name, io.BytesIO(data), lambda d=data: d)
    out.digest = digest.hexdigest()
    return out
