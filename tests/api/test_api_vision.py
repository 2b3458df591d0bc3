"""Vision API: happy paths, cache behaviour, and every kind of bad input (the server keeps serving)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.serialization import decode_typed_array
from tests.factories import image_bytes, photo


def upload(client, data: bytes, name="x.png", **form):
    return client.post("/api/vision/analyze", files={"image": (name, data, "image/png")}, data=form)


def test_health_and_models(client) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    ids = [m["id"] for m in client.get("/api/models").json()["models"]]
    assert ids[:2] == ["tiny_vit", "tiny_deit_distilled"]


def test_analyze_sample_shapes_and_typed_arrays(client) -> None:
    r = client.post("/api/vision/analyze", data={"sample": "astronaut"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grid"] == {"rows": 4, "cols": 4, "patch_size": 8, "num_prefix_tokens": 1, "resolution": 32}
    cls = decode_typed_array(body["cls_attention"])
    assert cls.shape == (3, 4, 16)
    assert np.all(cls >= 0) and np.all(cls.sum(-1) <= 1.0 + 1e-5)
    roll = decode_typed_array(body["rollout"])
    assert roll.shape == (16,)
    assert len(body["predictions"]) == 5 and body["predictions"][0]["label"]  # ImageNet names from timm
    assert body["cls_query"] == "cls"
    png = client.get(body["image_url"])
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (32, 32)


def test_patch_attention_served_from_cache(client) -> None:
    body = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()
    aid = body["analysis_id"]
    r = client.get(f"/api/vision/analysis/{aid}/attention", params={"layer": 2, "head": 1, "query": 5})
    vals = decode_typed_array(r.json()["values"])
    assert vals.shape == (4, 4)
    assert abs(vals.sum() - 1.0) < 0.5  # row minus the CLS share
    mean = decode_typed_array(
        client.get(f"/api/vision/analysis/{aid}/attention", params={"layer": 2, "query": 5}).json()["values"]
    )
    assert mean.shape == (4, 4) and not np.allclose(mean, vals)
    again = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()
    assert again["analysis_id"] == aid and again["forward_ms"] == body["forward_ms"] and "cached" not in again
    assert (
        client.get(f"/api/vision/analysis/{aid}/attention", params={"layer": 9, "query": 0}).status_code
        == 400
    )
    expired = client.get("/api/vision/analysis/deadbeef/attention", params={"layer": 0, "query": 0})
    assert expired.status_code == 404 and "expired" in expired.json()["detail"]


def test_rollout_options_recomputed(client) -> None:
    aid = client.post("/api/vision/analyze", data={"sample": "rocket"}).json()["analysis_id"]
    a = decode_typed_array(client.get(f"/api/vision/analysis/{aid}/rollout").json()["rollout"])
    b = decode_typed_array(
        client.get(
            f"/api/vision/analysis/{aid}/rollout", params={"head_fusion": "max", "discard_ratio": 0.9}
        ).json()["rollout"]
    )
    assert a.shape == b.shape == (16,) and not np.allclose(a, b)


def test_image_hash_restores_upload(client) -> None:
    data = image_bytes(photo(0, (64, 48), high=255))
    first = upload(client, data).json()
    again = client.post("/api/vision/analyze", data={"image_hash": first["image_hash"]})
    assert again.status_code == 200 and again.json()["analysis_id"] == first["analysis_id"]
    gone = client.post("/api/vision/analyze", data={"image_hash": "0" * 64})
    assert gone.status_code == 404 and "upload it again" in gone.json()["detail"]


def test_distilled_deit_two_prefix_tokens(client) -> None:
    r = client.post("/api/vision/analyze", data={"sample": "chelsea", "model": "tiny_deit_distilled"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grid"]["num_prefix_tokens"] == 2
    assert decode_typed_array(body["cls_attention"]).shape == (2, 2, 9)


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda: b"", 400, "empty"),
        (lambda: b"hello, I am a text file pretending to be a PNG\n" * 10, 415, "not an image"),
        (lambda: image_bytes(photo(0, (64, 48), high=255), "JPEG")[:300], 400, "truncated"),
        (lambda: image_bytes(Image.new("RGB", (1, 1))), 400, "1x1"),
    ],
    ids=["empty", "text-renamed-png", "truncated-jpeg", "1x1"],
)
def test_bad_uploads_get_clear_4xx(client, make, status, words) -> None:
    r = upload(client, make())
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert client.get("/api/health").status_code == 200  # still serving


def test_decompression_bomb_refused(client) -> None:
    # 30000 x 30000 palette PNG compresses to ~ 1 MB of zeros... keep the file tiny with mode "1".
    bomb = image_bytes(Image.new("1", (30000, 30000)))
    assert len(bomb) < 1024 * 1024
    r = upload(client, bomb)
    assert r.status_code == 413 and "pixels" in r.json()["detail"]


def test_streamed_upload_cut_off_without_content_length(client) -> None:
    """A chunked body has no Content-Length: the limit must hold while it streams in."""
    boundary = "atlasboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(40):
            yield b"\0" * 65536  # 2.5 MB in all, over the 1 MB test limit
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/api/vision/analyze",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413 and "1 MB" in r.json()["detail"]
    assert client.get("/api/health").status_code == 200


def test_upload_over_size_limit(client) -> None:
    big = b"\x89PNG" + b"\0" * (2 * 1024 * 1024)  # the test settings allow 1 MB
    r = upload(client, big)
    assert r.status_code == 413
    assert "1 MB" in r.json()["detail"]
    assert client.get("/api/health").status_code == 200


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "L", "LA"])
def test_modes_are_converted(client, mode: str) -> None:
    if mode == "I;16":
        img = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)
    else:
        img = photo(0, (64, 48), high=255).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    r = upload(client, image_bytes(img, fmt))
    assert r.status_code == 200, r.text


def test_sixteen_bit_is_rescaled_not_clipped() -> None:
    from app.images import to_rgb

    arr = np.array([[0, 30000, 60000]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    rgb = np.asarray(to_rgb(img))
    assert rgb[0, :, 0].tolist() == [0, 128, 255]


def test_animated_gif_first_frame(client) -> None:
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    r = upload(client, buf.getvalue(), "anim.gif")
    assert r.status_code == 200
    shown = Image.open(io.BytesIO(client.get(r.json()["image_url"]).content)).convert("RGB")
    assert shown.getpixel((5, 5))[0] > 200 and shown.getpixel((5, 5))[2] < 50  # red, the first frame


def test_exif_rotated_jpeg_shown_upright(client) -> None:
    # A landscape 64x32 image (left half white) stored with EXIF orientation 6 (rotate 90 CW to view).
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = image_bytes(Image.fromarray(arr), "JPEG", exif=exif.tobytes())
    from app.images import decode_image

    decoded = decode_image(data, 10_000_000, 8)
    assert decoded.image.size == (32, 64)  # upright: portrait
    top = np.asarray(decoded.image)[:8].mean()
    assert top > 200  # the white half is on top after rotating 90 degrees clockwise
    assert upload(client, data, "rotated.jpg").status_code == 200


def test_unknown_model_and_bad_options(client) -> None:
    r = client.post("/api/vision/analyze", data={"sample": "astronaut", "model": "../../etc/passwd"})
    assert r.status_code == 400 and "Unknown vision model" in r.json()["detail"]
    r = client.post("/api/vision/analyze", data={"sample": "astronaut", "resolution": 999})
    assert r.status_code == 400 and "resolution" in r.json()["detail"]
    r = client.post("/api/vision/analyze", data={"sample": "nope"})
    assert r.status_code == 400
    r = client.post("/api/vision/analyze", data={})
    assert r.status_code == 400 and "exactly one" in r.json()["detail"]
    r = client.post("/api/vision/analyze", data={"sample": "astronaut", "discard_ratio": 2})
    assert r.status_code == 422 and "discard_ratio" in r.json()["detail"]


def test_queue_full_answers_503_with_retry_after(client) -> None:
    from app.compute import QueueFull

    state = client.app.state.atlas

    def full(*_a, **_k):
        raise QueueFull("the model is busy (4 requests queued)")

    state.queue.submit = full  # every path into the queue (run, run_sync) admits through submit
    try:
        r = client.post("/api/vision/analyze", data={"sample": "chelsea"})
    finally:
        del state.queue.submit  # the instance attribute shadowed the method
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert "busy" in r.json()["detail"]


def test_big_jpeg_decoded_at_reduced_scale() -> None:
    from app.images import DRAFT_SIDE, decode_image

    big = Image.fromarray((np.indices((2400, 3200)).sum(0) % 256).astype(np.uint8)).convert("RGB")
    decoded = decode_image(image_bytes(big, "JPEG", quality=85), 50_000_000, 8)
    assert decoded.original_size == (3200, 2400)
    assert decoded.image.size == (1600, 1200)  # DCT scale 1/2: both sides stay >= DRAFT_SIDE
    assert min(decoded.image.size) >= DRAFT_SIDE
