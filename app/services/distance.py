"""Mean attention distance (ViT paper Fig. 7 right, Appendix D.7) for one cached analysis and for image
sets run as background jobs.

Budgets (README "Resource model"):

- one analysis: :func:`analysis_distance` runs in the CPU pool and is cached in ``state.views`` per
  (analysis id, renormalize); the unit is applied afterwards (MAD is linear in d), so switching units never
  recomputes. It reduces the cached (L, H, N, N) float16 maps one layer at a time in float32: peak extra
  memory per view ~ H * N^2 * 4 + H * P^2 * 4 + N^2 * 4 bytes (~55 MB for a 448 px DINOv2 ViT-S/14,
  H = 6, N = 1025), at most ``cpu_workers`` views at once.
- image sets: the job-slot and per-client checks come first; then :func:`parse_uploads` (CPU pool) reads
  only zip central directories and image headers (no pixel is decoded) and refuses a set over its pixel
  budget (:func:`pixel_budget`) with 413 at once. Each image is decoded inside the job (cancellable), in
  the CPU pool under the decode slots, and each batch's forward goes through the compute queue.
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
from typing import Literal

import numpy as np
import torch
from PIL import Image

from app.compute import Busy
from app.images import ImageError
from app.jobs import Job, UserError
from app.schemas.vit_figures import (
    DistanceGeometry,
    DistanceJobResponse,
    DistanceResultSchema,
    ReceptiveFieldResponse,
)
from app.serialization import typed_array
from app.services.backend import remote_models
from app.services.images import decode_bounded, header_size
from app.settings import Settings
from app.state import AppState
from models.vision.analysis import VisionAnalysis, VisionModel
from models.vision.distance import (
    Cancelled,
    convert_unit,
    dataset_mean_attention_distance,
    mean_attention_distance,
)
from models.vision.receptive_field import (
    max_mad,
    on_vit_depth_axis,
    resnet50_receptive_fields,
    uniform_image_mad,
    uniform_window_mad,
)
from models.vision.samples import IMAGE_SUFFIXES, SAMPLE_NAMES, sample_images

MAX_FILES = 64  # multipart file parts per job
MAX_IMAGES = 256  # images per job, zips expanded
MAX_UNCOMPRESSED_FACTOR = 4  # a zip's image members may total at most this times the upload limit
ZIP_SUFFIXES = (*IMAGE_SUFFIXES, ".gif", ".tif", ".tiff")
BUSY_POLL_S = 0.2  # a job waiting for the queue or the pool retries this often (and checks cancel)


def pixel_budget(settings: Settings) -> int:
    """Pixels one image-set job may decode in all, from the images' headers."""
    return settings.limits.max_job_megapixels * 1_000_000


@lru_cache(maxsize=1)
def sample_list() -> tuple[Image.Image, ...]:
    """The bundled sample photos, decoded once per process."""
    return tuple(sample_images().values())


@dataclass(frozen=True)
class RunResult:
    """A finished distance computation, always in pixels."""

    mad_px: np.ndarray  # (L, H) float64
    n_images: int
    renormalize: bool
    model: str
    label: str
    source: Literal["analysis", "samples", "upload"]
    source_label: str
    geometry: DistanceGeometry

    @property
    def nbytes(self) -> int:  # for the byte-bounded view cache
        return int(self.mad_px.nbytes) + 1024

    def to_schema(self, unit: str) -> DistanceResultSchema:
        g = self.geometry
        mad = convert_unit(self.mad_px, (g.rows, g.cols), g.patch_size, unit)  # (L, H)
        return DistanceResultSchema(
            model=self.model,
            label=self.label,
            source=self.source,
            source_label=self.source_label,
            n_images=self.n_images,
            unit=unit,
            renormalize=self.renormalize,
            geometry=g,
            mad=typed_array(mad, "f8"),
            per_layer_mean=typed_array(mad.mean(axis=1), "f8"),
        )


def geometry(vm: VisionModel, resolution: int) -> DistanceGeometry:
    info = vm.info
    rows, cols = info.grid(resolution, resolution)
    return DistanceGeometry(
        num_layers=info.num_layers,
        num_heads=info.num_heads,
        patch_size=info.patch_size,
        rows=rows,
        cols=cols,
        resolution=resolution,
        num_prefix_tokens=info.num_prefix_tokens,
    )


# ----------------------------------------------------------------------------------------------------------
# One image, from the vision page's cache


def analysis_distance(vm: VisionModel, analysis: VisionAnalysis, renormalize: bool) -> RunResult:
    """MAD in pixels of a cached analysis (no forward pass), computed layer by layer in float32."""
    with torch.inference_mode():
        mad = mean_attention_distance(
            analysis.attentions, analysis.grid, analysis.num_prefix_tokens, vm.info.patch_size, renormalize
        )  # (L, H) pixels
    return RunResult(
        mad_px=mad.double().numpy(),
        n_images=1,
        renormalize=renormalize,
        model=vm.info.id,
        label=vm.info.label,
        source="analysis",
        source_label="this image",
        geometry=geometry(vm, analysis.resolution),
    )


# ----------------------------------------------------------------------------------------------------------
# Image sets


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


def _wait_for_room(fn: Callable[[], object], cancel: threading.Event, what: str) -> object:
    """Run ``fn`` (which submits to a bounded executor); while that is full, retry (cancellable)."""
    while True:
        if cancel.is_set():
            raise Cancelled(f"cancelled while waiting for {what}")
        try:
            return fn()
        except Busy:
            cancel.wait(BUSY_POLL_S)


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
            decoded = _wait_for_room(
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


def start_job(
    state: AppState,
    vm: VisionModel,
    resolution: int,
    renormalize: bool,
    batch_size: int | None,
    parsed: ParsedUploads | None,
    owner: str | None,
) -> tuple[Job, bool]:
    """Start (or reuse) a distance job over the samples (``parsed`` None) or checked uploads.

    Returns (job, reused): an identical finished job is reused, an identical running one is returned
    (the registry merges by key). Raises :class:`app.jobs.JobsBusy` when the slots or the quota are full."""
    source: Literal["samples", "upload"] = "samples" if parsed is None else "upload"
    set_key = "samples" if parsed is None else parsed.digest
    key = f"{vm.info.id}|{resolution}|{int(renormalize)}|{set_key}"
    registry = state.distance_jobs
    previous = registry.find_done(key)
    if previous is not None:
        return previous, True
    n = len(SAMPLE_NAMES) if parsed is None else len(parsed.names)
    source_label = f"{n} sample photos" if parsed is None else f"{n} uploaded image{'s' if n != 1 else ''}"
    batch = batch_size or (32 if state.device.type == "cuda" else 4)  # CPU: finer progress, shorter holds
    geom = geometry(vm, resolution)

    def run(job: Job) -> RunResult:
        images = SampleImages() if parsed is None else UploadedImages(state, parsed, job.cancel_event)

        def execute(fn: Callable[[], None]) -> object:  # each batch through the compute queue
            return _wait_for_room(lambda: state.queue.run_sync(fn), job.cancel_event, "the model")

        remote = remote_models(state)
        if remote is not None:  # ray backend: batches fan out as Ray tasks across the nodes
            result = remote.dataset_distance(
                vm, images, batch, resolution, renormalize, job.report, job.cancel_event
            )
        else:
            result = dataset_mean_attention_distance(
                vm,
                images,
                batch_size=batch,
                resolution=resolution,
                renormalize=renormalize,
                unit="pixels",
                progress=job.report,
                cancel=job.cancel_event,
                execute=execute,
            )
        return RunResult(
            mad_px=result.mad,
            n_images=result.n_images,
            renormalize=renormalize,
            model=vm.info.id,
            label=vm.info.label,
            source=source,
            source_label=source_label,
            geometry=geom,
        )

    params = dict(model=vm.info.id, source=source, renormalize=renormalize, batch_size=batch)
    return registry.submit(run, "distance", params, key=key, total=n, owner=owner), False


def job_response(job: Job, unit: str, reused: bool = False) -> DistanceJobResponse:
    p = job.params
    return DistanceJobResponse(
        job_id=job.id,
        status=job.status,
        done=job.done,
        total=job.total,
        elapsed_s=round(job.elapsed_s, 3),
        error=job.error,
        model=p["model"],
        source=p["source"],
        renormalize=p["renormalize"],
        batch_size=p["batch_size"],
        reused=reused,
        result=job.result.to_schema(unit) if job.status == "done" else None,
        job_url=f"/api/distance/jobs/{job.id}",
        cancel_url=f"/api/distance/jobs/{job.id}/cancel",
    )


# ----------------------------------------------------------------------------------------------------------
# CNN reference line (CPU pool)


def receptive_field_reference(
    num_layers: int, unit: str, patch_size: int, rows: int, cols: int
) -> ReceptiveFieldResponse:
    """ResNet-50's theoretical receptive field per layer on the ViT's layer axis (relative depth), with the
    comparable quantity: the MAD of uniform attention over that window on the ViT's R x C grid of
    ``patch_size`` px patches (:func:`models.vision.receptive_field.uniform_window_mad`), and the two
    ceilings (uniform attention over the whole image, and the largest MAD any head can have)."""
    rfs = resnet50_receptive_fields()
    points = on_vit_depth_axis(rfs, num_layers)
    grid = (rows, cols)
    px = np.array([p[1] for p in points], dtype=np.float64)  # (n,) widths in pixels
    window = uniform_window_mad(grid, patch_size, px)  # (n,) pixels

    def to_unit(v: np.ndarray) -> np.ndarray:
        return convert_unit(v, grid, patch_size, unit)

    scalars = to_unit(
        np.array(
            [
                uniform_image_mad(grid, patch_size),
                max_mad(grid, patch_size),
                patch_size * np.hypot(rows, cols),
            ]
        )
    )  # (3,)
    return ReceptiveFieldResponse(
        network="ResNet-50",
        unit=unit,
        num_layers=num_layers,
        x=typed_array(np.array([p[0] for p in points]), "f8"),
        rf=typed_array(to_unit(px), "f8"),
        rf_pixels=[int(v) for v in px],
        names=[rf.name for rf in rfs],
        depth_index=[rf.depth_index for rf in rfs],
        uniform_window=typed_array(to_unit(window), "f8"),
        uniform_image=float(scalars[0]),
        max_distance=float(scalars[1]),
        image_diagonal=float(scalars[2]),
    )
