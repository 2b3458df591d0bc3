"""Image decoding: reduce before converting, float32 rescale, broken EXIF ignored, and a bounded decode flood."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from app import images
from app.images import DRAFT_SIDE, decode_image, reduction_factor
from app.services import images as image_service
from tests.factories import BROKEN_EXIF, photo_bytes


@pytest.mark.parametrize("make", BROKEN_EXIF.values(), ids=BROKEN_EXIF.keys())
def test_broken_exif_is_ignored(client, make) -> None:
    data = make()
    with pytest.raises((SyntaxError, ValueError)):  # what Pillow itself does with it
        from PIL import ImageOps

        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    decoded = decode_image(data, 10_000_000, 8)
    assert decoded.image.size == (40, 30) and decoded.image.mode == "RGB"
    r = client.post("/api/vision/analyze", files={"image": ("x.png", data, "image/png")})
    assert r.status_code == 200, r.text


def test_reduction_factor() -> None:
    assert reduction_factor((800, 600)) == 1
    assert reduction_factor((3200, 2400)) == 2  # short side stays >= DRAFT_SIDE
    assert reduction_factor((8000, 8000)) == 7
    f = reduction_factor((100_000, 1_100))  # a panorama: short side 1100, but 110 MP -> capped in pixels
    assert (100_000 // f) * (1_100 // f) <= images.MAX_DECODED_PIXELS


def test_big_16_bit_png_is_reduced_in_its_own_mode_then_rescaled_in_float32(monkeypatch) -> None:
    """The 16-bit image is box-reduced as I;16 before any conversion: to_rgb only ever sees the small one,
    and the float copy it makes is float32."""
    side = 4 * DRAFT_SIDE + 5
    ramp = (np.arange(side, dtype=np.uint32) * 65535 // (side - 1)).astype(np.uint16)
    arr = np.broadcast_to(ramp, (side, side))  # (H, W) a horizontal 0..65535 ramp
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    seen: list[tuple[str, tuple[int, int]]] = []
    converted: list[np.dtype] = []
    real_to_rgb, real_asarray = images.to_rgb, np.asarray

    def spy_to_rgb(img):
        seen.append((img.mode, img.size))
        return real_to_rgb(img)

    def spy_asarray(a, *args, **kwargs):
        out = real_asarray(a, *args, **kwargs)
        if isinstance(a, Image.Image):
            converted.append(out.dtype)
        return out

    monkeypatch.setattr(images, "to_rgb", spy_to_rgb)
    monkeypatch.setattr(images.np, "asarray", spy_asarray)
    decoded = decode_image(buf.getvalue(), 50_000_000, 8)
    monkeypatch.undo()
    assert decoded.original_size == (side, side) and decoded.original_mode.startswith("I;16")
    assert seen == [(seen[0][0], (side // 4, side // 4))] and seen[0][0].startswith("I;16")
    assert decoded.image.size == (side // 4, side // 4)
    assert all(dt != np.float64 for dt in converted)
    row = np.asarray(decoded.image)[0, :, 0].astype(int)  # (W,) the ramp, rescaled to 0..255
    assert row[0] <= 1 and row[-1] >= 254 and np.all(np.diff(row) >= 0)


def test_palette_image_reduced_by_nearest_keeps_its_colours() -> None:
    side = 2 * DRAFT_SIDE + 2
    img = Image.new("P", (side, side))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    arr = np.zeros((side, side), np.uint8)
    arr[:, side // 2 :] = 1  # left red, right blue
    img.frombytes(arr.tobytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    rgb = np.asarray(decode_image(buf.getvalue(), 50_000_000, 8).image)
    assert rgb.shape == (side // 2, side // 2, 3)
    colours = {tuple(c) for c in rgb.reshape(-1, 3)}
    assert colours == {(255, 0, 0), (0, 0, 255)}  # no averaged palette indices


def test_decode_flood_stays_bounded(client, monkeypatch) -> None:
    """Many concurrent uploads of distinct images: at most decode_concurrency decodes at once (counted), the
    rest wait their turn or get 503 + Retry-After, and the server keeps answering meanwhile."""
    state = client.app.state.atlas
    limit = state.settings.limits.decode_concurrency
    active, peak, lock, gate = 0, 0, threading.Lock(), threading.Event()
    real = image_service.decode_image

    def counting_decode(data, max_pixels, min_side):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            gate.wait(20)  # hold the slot until the test has seen the flood pile up
            return real(data, max_pixels, min_side)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(image_service, "decode_image", counting_decode)
    n = 12
    statuses: list[int] = []

    def post(i: int) -> None:
        data = photo_bytes(100 + i)
        r = client.post("/api/vision/analyze", files={"image": (f"{i}.png", data, "image/png")})
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["Retry-After"] and "busy" in r.json()["detail"]

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while active < limit:  # the slots fill up ...
        assert time.monotonic() < deadline, "decodes never started"
        time.sleep(0.01)
    assert client.get("/api/health").status_code == 200  # ... and health still answers
    gate.set()
    for t in threads:
        t.join(30)
    assert peak == limit, peak
    assert len(statuses) == n and set(statuses) <= {200, 503} and 200 in statuses, statuses
