"""What the simulated users send: distinct photos and zips generated in memory, text of a given token
length, and multipart bodies (bench/load/locustfile.py and bench/load/fairness.py)."""

from __future__ import annotations

import io
import random
import threading
import zipfile

import numpy as np
from PIL import Image

SENTENCES = (
    "the attention of a transformer moves from local patterns in early layers to global structure later "
    "students watch each head look at nearby words or at the separator token while meaning forms slowly "
    "across many layers queries keys and values mix into new representations of every sentence we type "
    "models read long documents paragraphs questions answers dates names places numbers and small stories"
)
WORDS = SENTENCES.split()


# --- distinct photos, generated in memory ---------------------------------------------------------------
def _base_photos() -> list[np.ndarray]:
    from skimage import data

    photos = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "immunohistochemistry", "retina"):
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - a sample that needs a download is simply skipped
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)  # (H, W) -> (H, W, 3)
        photos.append(img[..., :3].astype(np.uint8))  # (H, W, 3)
    return photos


BASES = _base_photos()
_counter = iter(range(1 << 62))
_counter_lock = threading.Lock()


def next_number() -> int:
    """0, 1, 2, ... across the greenlets of this process (distinct photos, distinct client addresses)."""
    with _counter_lock:
        return next(_counter)


def distinct_jpeg(max_side: int = 480) -> bytes:
    """A random crop of a sample, tinted and stamped with a counter: a new content hash every call."""
    rng = np.random.default_rng()
    base = BASES[int(rng.integers(len(BASES)))]
    h, w = base.shape[:2]
    ch, cw = int(rng.integers(min(h, 96), h + 1)), int(rng.integers(min(w, 96), w + 1))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = base[y : y + ch, x : x + cw].astype(np.float32)  # (ch, cw, 3)
    crop *= rng.uniform(0.7, 1.3, size=3).astype(np.float32)  # per-channel tint
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    n = next_number()
    crop[0, : min(cw, 64)] = (
        np.unpackbits(np.array([n], dtype=">u8").view(np.uint8))[: min(cw, 64), None] * 255
    )
    image = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
    image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(rng.integers(70, 95)))
    return buf.getvalue()


def small_zip(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"photos/img_{i}.jpg", distinct_jpeg(max_side=224))
    return buf.getvalue()


def text_of_tokens(approx_tokens: int) -> str:
    """Random English words; ~1.15 MiniLM word pieces per word, so ~approx_tokens tokens."""
    n_words = max(3, int(approx_tokens / 1.15))
    return " ".join(random.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body: (body, content type). ``files``: (field, filename, bytes, mime type)."""
    boundary = f"atlas-load-{random.getrandbits(64):016x}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for field, filename, content, mime in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        )
        parts += [head.encode(), content, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
