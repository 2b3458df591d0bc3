"""``python -m app export``: one image (or sentence) through one model, every map to an ``.npz``.

The model is an allowlisted id from the settings (TOML file / environment, as ``serve`` reads them) or
anything ``--vision-model`` / ``--text-model`` accept (a timm name, a checkpoint with its arch, a folder).
The image is decoded as an upload is (EXIF orientation, first frame, pixel limits), and the arrays are
those of :func:`models.vision.export.vision_arrays` / :func:`models.text.export.text_arrays`, the same
numbers the API serves. Beside it, ``python -m models.vision.distance`` averages the distance over image
sets without keeping any map.

    python -m app export --image cat.jpg --out cat.npz
    python -m app export --image cat.jpg --model w.safetensors,arch=vit_small_patch16_224 --out cat.npz
    python -m app export --text "The animal didn't cross the street." --model all-minilm-l6-v2 --out s.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from app.export_ablation import influence_arrays
from app.images import ImageError, decode_image
from app.model_args import CliError, check_text, check_vision, text_entry, vision_entry
from app.services.errors import ServiceError
from app.settings import Settings
from app.store import text_store, vision_store
from models.devices import resolve_device, resolve_dtype
from models.text.analysis import TextModelSpec
from models.vision.registry import VisionModelSpec


def vision_spec(settings: Settings, model: str | None, arch: str | None = None) -> VisionModelSpec:
    """An allowlisted id, else a ``--vision-model`` argument; checked (one-line :class:`CliError`)."""
    model = model or settings.models.default_vision_model
    known = settings.models.vision_specs()
    spec = known[model] if model in known and arch is None else vision_entry(model, arch)
    check_vision(spec)
    return spec


def text_spec(settings: Settings, model: str | None) -> TextModelSpec:
    model = model or settings.models.default_text_model
    known = settings.models.text_specs()
    spec = known[model] if model in known else text_entry(model)
    check_text(spec)
    return spec


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = False) -> Path:
    """Write ``arrays`` to exactly ``path`` (np.savez would append .npz to another suffix)."""
    out = Path(path)
    if not out.parent.is_dir():
        raise CliError(f"--out {path}: the folder {out.parent} does not exist")
    with out.open("wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)
    return out


def export_image(settings: Settings, args: argparse.Namespace) -> str:
    """Analyse ``args.image`` once and write its arrays; returns a one-line summary."""
    from app.export_features import feature_kwargs
    from models.vision.analysis import analyze_image
    from models.vision.export import vision_arrays
    from models.vision.feature_export import feature_arrays

    path = Path(args.image).expanduser()
    if not path.is_file():
        raise CliError(f"image {args.image!r}: no such file")
    spec = vision_spec(settings, args.model, args.arch)
    try:
        image = decode_image(
            path.read_bytes(), settings.limits.max_image_pixels, settings.limits.min_image_side
        ).image
    except ImageError as e:
        raise CliError(f"image {args.image!r}: {e}") from None
    device = resolve_device(settings.server.device)
    try:  # the spec itself, so a --model path loads without the allowlist
        vm = vision_store(settings, device, resolve_dtype(settings.server.dtype, device)).get(spec)
    except ServiceError as e:
        raise CliError(f"vision model {spec.id!r} did not load: {e.__cause__}") from None
    try:
        resolution = vm.check_resolution(args.resolution)
    except ValueError as e:
        raise CliError(str(e)) from None
    analysis = analyze_image(vm, image, resolution, keep_maps=True)  # the file holds every map
    arrays = vision_arrays(vm, analysis, args.head_fusion, args.discard_ratio, args.renormalize, args.unit)
    arrays.update(
        influence_arrays(vm, args, analysis.image)
    )  # --ablate, --importance (app/export_ablation.py)
    try:  # --features, --parts, --similarity, --norms (app/export_features.py)
        arrays.update(feature_arrays(analysis, vm.info.patch_size, **feature_kwargs(args)))
    except (IndexError, ValueError) as e:
        raise CliError(str(e)) from None
    arrays |= flow_arrays("vision", vm, analysis, args)
    out = write_npz(args.out, arrays, args.compress)
    L, H, N, _ = arrays["attentions"].shape  # (L, H, N, N)
    rows, cols = analysis.grid
    return (
        f"wrote {out}: {spec.id} at {resolution} px, {L} layers x {H} heads, {N} tokens "
        f"({analysis.num_prefix_tokens} prefix + {rows} x {cols} patches)"
    )


def export_text(settings: Settings, args: argparse.Namespace) -> str:
    """Analyse ``args.text`` (and ``args.target``) once and write its arrays; returns a one-line summary."""
    from models.text.analysis import TextInputError
    from models.text.export import text_arrays

    if len(args.text) > settings.limits.max_text_chars:
        raise CliError(
            f"--text is {len(args.text)} characters long; the limit is {settings.limits.max_text_chars}"
        )
    spec = text_spec(settings, args.model)
    try:
        model = text_store(settings, resolve_device(settings.server.device)).get(spec)
    except ServiceError as e:
        raise CliError(f"text model {spec.id!r} did not load: {' '.join(str(e.__cause__).split())}") from None
    try:
        analysis = model.analyze(args.text, args.target)
    except TextInputError as e:
        raise CliError(str(e)) from None
    arrays = text_arrays(analysis)
    arrays.update(
        influence_arrays(model, args)
    )  # --ablate, --importance, --logit-lens (app/export_ablation.py)
    arrays |= flow_arrays("text", model, analysis, args)
    out = write_npz(args.out, arrays, args.compress)
    shapes = ", ".join(f"{k} {tuple(analysis.blocks[k].shape)}" for k in analysis.blocks)
    return f"wrote {out}: {spec.id}, {shapes}"


def flow_arrays(family: str, model, analysis, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """``--contributions`` / ``--relevance`` / ``--curves`` (issue 15): models/influence/export.py."""
    from models.influence import export as inf
    from models.influence.run import UnsupportedModel

    flags = dict(
        contributions=getattr(args, "contributions", False),
        relevance=getattr(args, "relevance", False),
        curves=getattr(args, "curves", False),
    )
    if not any(flags.values()):
        return {}
    try:
        if family == "vision":
            return inf.vision_influence_arrays(model, analysis, query=getattr(args, "query", None), **flags)
        return inf.text_influence_arrays(
            model, analysis, pair=getattr(args, "pair", None), step=getattr(args, "step", 0), **flags
        )
    except (UnsupportedModel, ValueError, IndexError) as e:
        raise CliError(str(e)) from None
