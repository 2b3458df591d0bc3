"""Test inputs, written once: photos and their encoded bytes, the tiny random ViTs, the tiny text models and
the app settings that serve them. Shared by every folder of ``tests/`` and by the ``bench/`` scripts.

Import-light: importing this module imports numpy and nothing heavier. torch, timm, PIL and the app are
imported inside the functions that need them, so a child process, a bench script or a test of the pure
``models/`` core can use the factories without importing the web app. ``TINY_SPECS`` is built on first use
(a module ``__getattr__``, PEP 562), since a ``VisionModelSpec`` needs ``models.vision.registry``.

Nothing here downloads: every model is random-init and built in process.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only; never imported at run time here
    import torch
    from PIL import Image

    from app.settings import Settings, TextModelEntry
    from models.vision.registry import VisionModelSpec

ROOT = Path(__file__).resolve().parents[1]  # the repository
ARTIFACTS = ROOT / "tests" / "artifacts"  # screenshots and other test outputs (git-ignored)

# --- browser ----------------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium, never downloaded
# Headless, offline Chromium: the page tests and ``scripts/screenshots.py`` launch it the same way.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# --- photos -----------------------------------------------------------------------------------------------


def pixels(seed: int = 0, size: int | tuple[int, int] = (40, 30), high: int = 256) -> np.ndarray:
    """Uniform random RGB pixels, ``(H, W, 3)`` uint8 in ``[0, high)``; ``size`` is ``(W, H)`` (PIL's order) or
    one side of a square."""
    w, h = (size, size) if isinstance(size, int) else size
    return np.random.default_rng(seed).integers(0, high, (h, w, 3), dtype=np.uint8)  # (H, W, 3)


def photo(seed: int = 0, size: int | tuple[int, int] = (40, 30), high: int = 256) -> Image.Image:
    """A random-noise RGB photo of ``size`` (``(W, H)`` or a square side): :func:`pixels` as a PIL image."""
    from PIL import Image

    return Image.fromarray(pixels(seed, size, high), "RGB")


def image_bytes(image: Image.Image, fmt: str = "PNG", **save_kw: Any) -> bytes:
    """``image`` encoded as ``fmt`` (``PNG``, ``JPEG``, ...); ``save_kw`` go to ``Image.save`` (quality, exif,
    pnginfo)."""
    import io

    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_kw)
    return buf.getvalue()


def photo_bytes(
    seed: int = 0, size: int | tuple[int, int] = (40, 30), fmt: str = "PNG", high: int = 256, **save_kw: Any
) -> bytes:
    """:func:`photo` encoded as ``fmt``: an upload."""
    return image_bytes(photo(seed, size, high), fmt, **save_kw)


def zip_of(members: dict[str, bytes]) -> bytes:
    """A deflated zip archive holding ``members`` (name -> bytes): an image-set upload."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 over type + data (PNG spec, section 5.3)."""
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bad_exif_chunk_png(seed: int = 0) -> bytes:
    """A PNG whose eXIf chunk is not a TIFF header (exif_transpose raises SyntaxError on it)."""
    data = photo_bytes(seed)
    ihdr_end = 8 + 8 + 13 + 4  # signature + IHDR (length, type, 13 bytes, crc)
    return data[:ihdr_end] + png_chunk(b"eXIf", b"this is not a TIFF header") + data[ihdr_end:]


def bad_raw_profile_png(seed: int = 1) -> bytes:
    """A PNG whose "Raw profile type exif" text chunk holds bad hex (bytes.fromhex raises ValueError)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", "\nexif\n      20\nzz this is not hex zz\n")
    return photo_bytes(seed, pnginfo=info)


# PNGs with broken EXIF that Pillow itself refuses to transpose; the app must ignore the EXIF and decode them
BROKEN_EXIF = {"exif-chunk": bad_exif_chunk_png, "raw-profile": bad_raw_profile_png}


# --- tiny random vision models ----------------------------------------------------------------------------

# 32 px, 8 px patches -> a 4 x 4 grid; 3 blocks of 4 heads, width 32.
TINY_VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=10)


def make_tiny_vit(arch: str = "vit_tiny_patch16_224", **overrides: Any) -> torch.nn.Module:
    """A timm ViT (``arch``) with :data:`TINY_VIT_KWARGS` (``overrides`` replace them), random init under seed
    0, eval."""
    import timm
    import torch

    torch.manual_seed(0)
    kwargs = {**TINY_VIT_KWARGS, **overrides}
    return timm.create_model(arch, pretrained=False, **kwargs).eval()


def tiny_layerscale_vit(img_size: int = 28) -> torch.nn.Module:
    """A DINOv2-shaped timm ViT (``vit_small_patch14_dinov2``: 14 px patches, LayerScale, here initialised at
    0.5), width 32, 2 blocks of 4 heads, ``img_size`` px, random init under seed 0, eval."""
    import timm
    import torch

    torch.manual_seed(0)
    return timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, img_size=img_size, embed_dim=32, depth=2, num_heads=4,
        init_values=0.5,
    ).eval()  # fmt: skip


def random_vit(
    cls: type, id: str, label: str, arch_tag: str = "vit_tiny_patch16_224.random", **timm_kwargs: Any
):
    """A random-init timm model entry: ``cls`` is :class:`VisionModelSpec` (the core's registry) or the app's
    ``VisionModelEntry`` (settings); ``timm_kwargs`` set its geometry."""
    return cls(id=id, arch_tag=arch_tag, source="random", label=label, timm_kwargs=timm_kwargs)


def tiny_vit_spec(label: str = "Tiny random ViT (tests)") -> VisionModelSpec:
    """The tiny random ViT as a registry entry (id ``tiny_vit``, 1 prefix token, 4 x 4 patches)."""
    from models.vision.registry import VisionModelSpec

    geometry = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=1000)
    return random_vit(VisionModelSpec, "tiny_vit", label, **geometry)


def tiny_vision_specs() -> list[VisionModelSpec]:
    """The two tiny vision models the test app serves: the ViT (1 prefix token, 4 x 4 patches) and a distilled
    DeiT (2 prefix tokens: cls + dist, 3 x 3 patches)."""
    from models.vision.registry import VisionModelSpec

    deit = dict(img_size=48, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    return [
        tiny_vit_spec(),
        random_vit(
            VisionModelSpec,
            "tiny_deit_distilled",
            "Tiny random distilled DeiT (2 prefix tokens, tests)",
            "deit_tiny_distilled_patch16_224.random",
            **deit,
        ),
    ]


@functools.cache
def _tiny_specs() -> list[VisionModelSpec]:
    return tiny_vision_specs()


def __getattr__(name: str) -> Any:
    """``TINY_SPECS``: :func:`tiny_vision_specs`, built once on first use (the same list every time)."""
    if name == "TINY_SPECS":
        return _tiny_specs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- tiny random text models and the test app's settings --------------------------------------------------


def tiny_text_settings() -> dict:
    """Text explorer settings for tests: tiny random BERT (encoder), paper Transformer on the date task
    (seq2seq, the default), GPT-2 (causal) and Marian (seq2seq); all built in process, nothing downloads."""
    from app.settings import TextModelEntry

    def entry(id: str, kind: str, arch: str, label: str, max_tokens: int) -> TextModelEntry:
        return TextModelEntry(
            id=id, kind=kind, source="random", name=arch, label=label, max_tokens=max_tokens
        )

    entries = [
        entry("tiny-bert", "encoder", "bert", "Tiny BERT", 512),
        entry("tiny-dates", "seq2seq", "dates", "Tiny dates", 128),
        entry("tiny-gpt2", "causal", "gpt2", "Tiny GPT-2", 256),
        entry("tiny-marian", "seq2seq", "marian", "Tiny Marian", 128),
    ]
    return dict(
        text_models=entries,
        default_text_model="tiny-bert",
        default_seq2seq_model="tiny-dates",
        max_text_chars=2000,
    )


def page_text_settings() -> dict:
    """The text page tests' models: a 4-layer tiny BERT (the default), the tiny date model (the seq2seq
    default) and a tiny GPT-2; all random, nothing downloads."""
    from app.settings import TextModelEntry

    entries = [
        TextModelEntry(
            id="tiny-bert",
            kind="encoder",
            source="random",
            name="bert",
            label="Tiny BERT 4L",
            config={"num_hidden_layers": 4},
        ),  # fmt: skip
        TextModelEntry(
            id="tiny-dates", kind="seq2seq", source="random", name="dates", label="Tiny dates", max_tokens=128
        ),
        TextModelEntry(id="tiny-gpt2", kind="causal", source="random", name="gpt2", label="Tiny GPT-2"),
    ]
    return dict(text_models=entries, default_text_model="tiny-bert", default_seq2seq_model="tiny-dates")


def minilm_shaped_bert() -> TextModelEntry:
    """A random BERT shaped like all-MiniLM-L6-v2 (6 layers x 12 heads, up to 512 tokens), id "tiny-bert"."""
    from app.settings import TextModelEntry

    return TextModelEntry(
        id="tiny-bert",
        kind="encoder",
        source="random",
        name="bert",
        label="MiniLM-shaped BERT",
        max_tokens=512,
        config={
            "num_hidden_layers": 6,
            "num_attention_heads": 12,
            "hidden_size": 96,
            "intermediate_size": 96,
        },
    )


def tiny_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for tests: tiny random models, CPU, a temp cache dir."""
    from app.settings import Settings

    base = dict(
        device="cpu",
        cache_dir=tmp_path / "cache",
        vision_models=list(_tiny_specs()),
        default_vision_model="tiny_vit",
        max_upload_mb=1.0,
        max_image_pixels=4_000_000,
        allowed_hosts=["testserver", "127.0.0.1", "localhost"],  # TestClient's Host is "testserver"
        gc_freeze=False,  # many apps in one test process; tests/services/test_gc_freeze.py checks it
        **tiny_text_settings(),
    )
    base.update(overrides)
    return Settings(**base)
