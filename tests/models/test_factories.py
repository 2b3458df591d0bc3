"""tests/factories.py: import-light, and each builder equal to the formula the tests used to write inline.

Kept with the ``models/`` tests: it starts no server and no browser.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
import zlib

import numpy as np
from PIL import Image

from tests import factories
from tests.factories import (
    BROKEN_EXIF,
    ROOT,
    image_bytes,
    photo,
    photo_bytes,
    png_chunk,
    tiny_settings,
    zip_of,
)


def test_importing_the_factories_imports_no_torch_no_pil_no_app() -> None:
    code = (
        "import sys, json; import tests.factories; "
        "print(json.dumps([m for m in ('torch', 'timm', 'PIL', 'app', 'fastapi') if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_photo_is_the_seeded_uniform_formula_in_pil_order() -> None:
    want = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # (H, W, 3)
    got = photo(3, (40, 30))
    assert got.size == (40, 30) and got.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(got), want)
    square = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(photo(1, 64, high=255)), square)


def test_encoded_photos_decode_back_to_the_same_pixels() -> None:
    data = photo_bytes(5, (20, 12))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(photo(5, (20, 12))))
    jpeg = image_bytes(photo(0), "JPEG", quality=92)
    assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).size == (40, 30)


def test_png_chunk_layout_and_crc() -> None:
    chunk = png_chunk(b"tEXt", b"k\x00v")
    assert chunk[:4] == (3).to_bytes(4, "big") and chunk[4:11] == b"tEXtk\x00v"
    assert int.from_bytes(chunk[11:], "big") == zlib.crc32(b"tEXtk\x00v")


def test_broken_exif_pngs_still_hold_the_photo() -> None:
    for make in BROKEN_EXIF.values():
        image = Image.open(io.BytesIO(make()))
        assert image.size == (40, 30)


def test_zip_of_round_trips() -> None:
    members = {"a/x.png": photo_bytes(1), "readme.txt": b"hi"}
    with zipfile.ZipFile(io.BytesIO(zip_of(members))) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == members


def test_tiny_specs_are_built_once_and_served_by_the_test_settings(tmp_path) -> None:
    assert factories.TINY_SPECS is factories.TINY_SPECS
    assert [s.id for s in factories.TINY_SPECS] == ["tiny_vit", "tiny_deit_distilled"]
    settings = tiny_settings(tmp_path, max_text_chars=10)
    assert [m.id for m in settings.models.vision_models][:2] == ["tiny_vit", "tiny_deit_distilled"]
    assert settings.models.default_vision_model == "tiny_vit" and settings.limits.max_text_chars == 10
