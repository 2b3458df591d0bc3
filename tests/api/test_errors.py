"""The one error family (app/services/errors.py): each class answers its status and JSON through the one
handler (app/errors.py), pickles unchanged (the Ray replicas return it), keeps its old import paths, and
OpenAPI documents the errors of every route through ``errors_doc``."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.errors import errors_doc, install_error_handlers
from app.services.errors import (
    AnalysisExpired,
    Busy,
    ImageError,
    InvalidOption,
    ModelUnavailable,
    ServiceError,
    TextError,
    UnknownModel,
)

ROOT = Path(__file__).resolve().parents[2]

# (error, status, JSON body, headers it must carry)
CASES = [
    (ServiceError("no"), 400, {"detail": "no"}, {}),
    (ServiceError("gone", 410), 410, {"detail": "gone"}, {}),
    (ServiceError(503, "older order"), 503, {"detail": "older order"}, {}),
    (ImageError("bad image"), 400, {"detail": "bad image"}, {}),
    (ImageError("too big", status=413), 413, {"detail": "too big"}, {}),
    (ImageError("no longer cached", 404), 404, {"detail": "no longer cached"}, {}),
    (UnknownModel("Unknown vision model 'x'."), 400, {"detail": "Unknown vision model 'x'."}, {}),
    (InvalidOption("resolution 99"), 400, {"detail": "resolution 99"}, {}),
    (TextError("The text is empty"), 422, {"detail": "The text is empty"}, {}),
    (TextError("too long", 413), 413, {"detail": "too long"}, {}),
    (
        AnalysisExpired("image"),
        404,
        {"detail": "This analysis has expired from the server cache; analyse the image again."},
        {},
    ),
    (ModelUnavailable("could not load"), 503, {"detail": "could not load"}, {}),
    (
        Busy("the queue is full", retry_after_s=7),
        503,
        {"detail": "the queue is full; try again in a few seconds.", "retry_after_s": 7},
        {"retry-after": "7"},
    ),
]
IDS = [f"{type(e).__name__}-{status}" for e, status, _, _ in CASES]


@pytest.fixture(scope="module")
def tiny() -> TestClient:
    """A bare FastAPI app with only the error handlers; ``/raise/{i}`` raises ``CASES[i]``."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{i}")
    async def raise_case(i: int) -> None:
        raise CASES[i][0]

    return TestClient(app)


@pytest.mark.parametrize(("i", "case"), list(enumerate(CASES)), ids=IDS)
def test_each_class_answers_its_status_and_json(tiny, i, case) -> None:
    _, status, body, headers = case
    r = tiny.get(f"/raise/{i}")
    assert r.status_code == status
    assert r.json() == body
    for name, value in headers.items():
        assert r.headers[name] == value


@pytest.mark.parametrize(("error", "status"), [(e, s) for e, s, _, _ in CASES], ids=IDS)
def test_the_family_pickles_unchanged(error, status) -> None:
    """What a Ray replica returns is what the ingress raises: same class, message, status, attributes."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error) and back.status == status == error.status
    assert back.__dict__ == error.__dict__
    assert back.detail() == error.detail() and back.extra() == error.extra()


def test_the_family_keeps_its_old_bases_and_import_paths() -> None:
    from app.compute import Busy as ComputeBusy
    from app.images import ImageError as ImagesImageError
    from app.services.text import TextError as TextTextError
    from app.state import InvalidOption as StateInvalidOption
    from app.state import UnknownModel as StateUnknownModel

    assert ComputeBusy is Busy and ImagesImageError is ImageError and TextTextError is TextError
    assert StateInvalidOption is InvalidOption and StateUnknownModel is UnknownModel
    for cls, base in [
        (ImageError, ValueError),
        (InvalidOption, ValueError),
        (UnknownModel, LookupError),
        (AnalysisExpired, LookupError),
        (Busy, RuntimeError),
    ]:
        assert issubclass(cls, ServiceError) and issubclass(cls, base)


def test_nothing_below_the_routers_raises_http_exception() -> None:
    below = [*sorted((ROOT / "app" / "services").glob("*.py"))]
    below += [ROOT / "app" / name for name in ("state.py", "jobs.py", "images.py", "deps.py", "compute.py")]
    offenders = [
        str(p.relative_to(ROOT))
        for p in below
        if re.search(r"(import [^\n]*|raise )HTTPException\b", p.read_text())
    ]
    assert offenders == []


def test_errors_doc_describes_each_status() -> None:
    doc = errors_doc(400, 404, 503)
    assert list(doc) == [400, 404, 503]
    assert doc[400]["model"].__name__ == "ErrorResponse" and doc[400]["description"] == "Bad Request"
    assert doc[503]["model"].__name__ == "BusyResponse"
    assert set(doc[503]["model"].model_fields) == {"detail", "retry_after_s"}


# --- through the real app -------------------------------------------------------------------------------


def test_real_app_answers_the_family(client) -> None:
    """Each class reached through a real route: status and ``{"detail"}`` as the one handler writes them."""
    r = client.post("/api/vision/analyze", data={"sample": "coffee", "model": "no-such-model"})
    assert r.status_code == 400 and "Unknown vision model 'no-such-model'" in r.json()["detail"]

    r = client.post("/api/vision/analyze", data={"sample": "coffee", "resolution": "31"})
    assert r.status_code == 400 and set(r.json()) == {"detail"}  # InvalidOption

    r = client.post("/api/vision/analyze", data={"sample": "no-such-sample"})
    assert r.status_code in (400, 422) and "detail" in r.json()

    r = client.post("/api/vision/analyze", files={"image": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 415 and "not an image" in r.json()["detail"]  # ImageError, status 415

    vision = client.get("/api/vision/analysis/deadbeef/rollout")
    text = client.get("/api/text/analysis/deadbeef")
    assert vision.status_code == text.status_code == 404  # AnalysisExpired, the same class for both
    assert vision.json() == {"detail": str(AnalysisExpired("image"))}
    assert text.json() == {"detail": str(AnalysisExpired("text"))}

    r = client.post("/api/text/analyze", json={"text": "   "})
    assert r.status_code == 422 and "empty" in r.json()["detail"]  # TextError
    r = client.post("/api/text/analyze", json={"text": "a" * 2001})
    assert r.status_code == 413 and "limit" in r.json()["detail"]  # TextError, 413
    r = client.post("/api/text/analyze", json={"text": "hello", "model": "nope"})
    assert r.status_code == 400 and "Unknown text model" in r.json()["detail"]  # UnknownModel


def test_openapi_lists_the_documented_errors_per_route(client) -> None:
    schema = client.get("/openapi.json").json()
    expected = {
        ("post", "/api/vision/analyze"): {"400", "404", "413", "415", "503"},
        ("get", "/api/vision/samples/{name}.jpg"): {"404"},
        ("post", "/api/distance/jobs"): {"400", "404", "413", "415", "503"},
        ("post", "/api/text/analyze"): {"400", "404", "413", "422", "503"},
        ("get", "/api/figures/positional"): {"422", "503"},
        ("get", "/api/vit-embeddings/patch-filters"): {"400", "422", "503"},
    }
    for (method, path), statuses in expected.items():
        responses = schema["paths"][path][method]["responses"]
        errors = {s for s in responses if s[0] in "45"}
        assert statuses <= errors and errors - statuses <= {"422"}, (method, path, errors)  # + FastAPI's 422
        for s in statuses:
            ref = responses[s]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/BusyResponse" if s == "503" else "/ErrorResponse"), (path, s, ref)
    busy = schema["components"]["schemas"]["BusyResponse"]
    assert {"detail", "retry_after_s"} <= set(busy["properties"])
