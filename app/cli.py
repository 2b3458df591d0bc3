"""Command line: ``python -m app serve`` (the web app on your own models) and ``python -m app export``
(every attention map of one image or sentence to an ``.npz``, for batch use).

Models on the command line (``--vision-model`` / ``--text-model``, repeatable; the first of each becomes the
page's default) are ``WHAT[,key=value,...]``:

- vision ``WHAT``: a timm name (``vit_base_patch16_224.augreg_in21k``: Hub weights, needs a network),
  ``hf-hub:org/repo``, a local ``.safetensors`` checkpoint with its timm architecture (``arch=NAME``, or
  ``--arch NAME`` right after it), or a local timm folder (``config.json`` + weights, as timm's
  ``save_for_hf`` writes it). Keys: ``id``, ``label``, ``arch``, ``resolutions=224+448`` (dynamic-size
  models only); any other key is a ``timm.create_model`` argument (``img_size=384``). A checkpoint's
  ``num_classes`` is read from its head when not given.
- text ``WHAT``: a local Hugging Face folder (``save_pretrained`` of the model *and* its tokenizer) or a Hub
  id (needs a network). Keys: ``id``, ``label``, ``kind=encoder|seq2seq|causal`` (read from ``config.json``
  when not given), ``max_tokens``.

Settings priority, first wins: flags > ``ATLAS_*`` environment variables > the TOML file (``--config`` or
``ATLAS_CONFIG``) > defaults. Model flags *add* to the allowlist those sources give (same id: the flag's
entry wins). Every model on the allowlist is checked before the server starts: a bad path, architecture,
checkpoint or id is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, get_args

from app.export_ablation import add_arguments as add_influence_arguments
from app.export_features import add_feature_arguments
from app.model_args import CliError, check_settings, text_entry, text_kind, vision_entry  # noqa: F401 (text_kind: re-exported)
from app.settings import Settings, SettingsFileError, load_settings
from models.devices import DeviceName
from models.vision.distance import Unit
from models.vision.rollout import HeadFusion

EXIT_USAGE = 2


# ----------------------------------------------------------------------------------------------------------
# Argument parsing


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


class _VisionModel(argparse.Action):
    """``--vision-model`` keeps [text, arch] pairs in order, so a following ``--arch`` can attach to it."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        items = list(getattr(namespace, self.dest, None) or [])
        items.append([values, None])
        setattr(namespace, self.dest, items)


class _Arch(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        items = getattr(namespace, "vision_model", None) or []
        if not items or items[-1][1] is not None:
            parser.error("--arch goes right after the --vision-model checkpoint it describes")
        items[-1][1] = values


MODEL_HELP = "see `python -m app --help`"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser(
        "serve",
        help="serve the web app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    s.add_argument("--config", help="TOML settings file (default: $ATLAS_CONFIG)")
    s.add_argument(
        "--vision-model", action=_VisionModel, metavar="MODEL", help=f"add a vision model ({MODEL_HELP})"
    )
    s.add_argument(
        "--arch", action=_Arch, help="timm architecture of the --vision-model checkpoint before it"
    )
    s.add_argument("--text-model", action="append", metavar="MODEL", help=f"add a text model ({MODEL_HELP})")
    s.add_argument("--device", choices=get_args(DeviceName), help="overrides ATLAS_DEVICE and the file")
    s.add_argument("--check", action="store_true", help="check the settings and models, print them, exit")
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))

    e = sub.add_parser(
        "export",
        help="write every attention map of one image or text to .npz",
        description="Every attention map of one image (or text) to an .npz: see app/export.py.",
    )
    what = e.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="image file (any format the app takes)")
    what.add_argument("--text", help="a sentence, for a text model")
    e.add_argument("--target", help="seq2seq models: the decoder's text (default: the greedy output)")
    e.add_argument(
        "--model", help="an allowlisted id, a timm name, a checkpoint or a folder (default: the default)"
    )
    e.add_argument("--arch", help="timm architecture of a --model checkpoint (or ,arch=NAME)")
    e.add_argument("--resolution", type=int, help="input side in pixels (default: the model's)")
    e.add_argument("--head-fusion", default="mean", choices=get_args(HeadFusion), help="rollout head fusion")
    e.add_argument(
        "--discard-ratio", type=float, default=0.0, help="rollout: drop this share of weakest links"
    )
    e.add_argument(
        "--renormalize", action="store_true", help="distance: renormalise rows over patches (Walmer)"
    )
    e.add_argument("--unit", default="pixels", choices=get_args(Unit), help="distance unit")
    e.add_argument("--config", help="TOML settings file (default: $ATLAS_CONFIG)")
    e.add_argument("--device", choices=get_args(DeviceName))
    e.add_argument("--compress", action="store_true", help="np.savez_compressed (smaller, slower)")
    e.add_argument("--out", required=True, help="the .npz to write")
    add_influence_arguments(e)  # --ablate, --ablate-mode, --pair, --importance, --logit-lens (issue 15)
    add_feature_arguments(e)
    add_influence_flags(e)
    return p


def add_influence_flags(e: argparse.ArgumentParser) -> None:
    """Issue 15: influence measures beside the maps (models/influence/export.py)."""
    g = e.add_argument_group("influence (models/influence)")
    g.add_argument("--contributions", action="store_true", help="ALTI contributions per layer and rolled out")
    g.add_argument(
        "--relevance", action="store_true", help="Chefer et al. 2021 relevancy, rollout, attention"
    )
    g.add_argument("--curves", action="store_true", help="deletion/insertion curves of the three maps")
    g.add_argument("--pair", help="BERT-family encoders: the second sentence (target: the pair's cosine)")
    g.add_argument("--step", type=int, default=0, help="date model: the decoder row explained (default 0)")
    g.add_argument("--query", type=int, help="vision: the patch explained (default: [CLS])")


# ----------------------------------------------------------------------------------------------------------
# Commands


def _merge(base: list, added: list) -> list:
    ids = {e.id for e in added}
    return [e for e in base if e.id not in ids] + added


def serve_settings(args: argparse.Namespace) -> Settings:
    """Settings for ``serve``: flags over environment over TOML over defaults, checked. A model flag that
    names an id already on the allowlist (built in, or from the file or environment) only makes it the
    default."""
    base = load_settings(args.config)
    known_vision, known_text = base.models.vision_specs(), base.models.text_specs()
    vision_args, text_args = args.vision_model or [], args.text_model or []
    vision = [vision_entry(t, arch) for t, arch in vision_args if not (t in known_vision and arch is None)]
    text = [text_entry(t) for t in text_args if t not in known_text]
    overrides: dict[str, Any] = {}
    if args.device:
        overrides["device"] = args.device
    if vision:
        overrides["extra_vision_models"] = _merge(base.models.extra_vision_models, vision)
    if text:
        overrides["extra_text_models"] = _merge(base.models.extra_text_models, text)
    if vision_args:  # the first model flag is the page's default
        first, arch = vision_args[0]
        overrides["default_vision_model"] = first if first in known_vision and arch is None else vision[0].id
    if text_args:
        overrides["default_text_model"] = text_args[0] if text_args[0] in known_text else text[0].id
    settings = load_settings(args.config, **overrides)
    check_settings(settings)
    return settings


def describe_settings(settings: Settings) -> str:
    lines = [f"device {settings.server.device}, dtype {settings.server.dtype}"]
    for spec in settings.models.vision_specs().values():
        mark = "*" if spec.id == settings.models.default_vision_model else " "
        lines.append(f"{mark} vision {spec.id}: {spec.source} {spec.path or spec.arch_tag}")
    for spec in settings.models.text_specs().values():
        mark = (
            "*"
            if spec.id in (settings.models.default_text_model, settings.models.default_seq2seq_model)
            else " "
        )
        lines.append(f"{mark} text   {spec.id}: {spec.kind}, {spec.source} {spec.name}")
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    settings = serve_settings(args)
    if args.check:
        print(describe_settings(settings))
        return 0
    import uvicorn

    from app.main import create_app
    from app.server import uvicorn_options, warn_if_exposed

    print(describe_settings(settings), file=sys.stderr)
    warn_if_exposed(args.host, "python -m app serve")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        **uvicorn_options(settings),
    )
    return 0


def export(args: argparse.Namespace) -> int:
    from app.export import export_image, export_text

    overrides = {"device": args.device} if args.device else {}
    settings = load_settings(args.config, **overrides)
    run = export_image if args.image is not None else export_text
    print(run(settings, args), file=sys.stderr)
    return 0


def _one_line(e: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "invalid settings: " + "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        )
    return " ".join(str(e).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user mistakes print one line on stderr and return 2 (no traceback)."""
    import tomllib

    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        return serve(args) if args.command == "serve" else export(args)
    except (CliError, SettingsFileError, tomllib.TOMLDecodeError, ValidationError) as e:
        print(f"python -m app {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
