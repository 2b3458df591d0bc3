"""The served process freezes its start-up heap for the cyclic garbage collector (app.compute.freeze_heap):
full collections then walk only what requests created, so they stop pausing the event loop for as long as
the models' and libraries' objects take to walk (measured in docs/cluster.md, "Where the difference went").
Each case runs in a child interpreter: a freeze is process-wide and would outlive the test."""

from __future__ import annotations

import pytest

from tests.conftest import run_python

APP = """
import gc, json, sys, tempfile
from pathlib import Path
from fastapi.testclient import TestClient
from app.main import create_app
from tests.factories import tiny_settings

settings = tiny_settings(Path(tempfile.mkdtemp()), gc_freeze=sys.argv[1] == "on")
before = gc.get_freeze_count()
with TestClient(create_app(settings)) as client:
    during = gc.get_freeze_count()
    ok = client.get("/api/health").status_code
print(json.dumps({"before": before, "during": during, "health": ok}))
"""


@pytest.mark.parametrize("switch", ["on", "off"])
def test_the_lifespan_freezes_the_heap_only_when_asked(switch: str) -> None:
    out = run_python(APP, switch)
    assert out["before"] == 0 and out["health"] == 200
    if switch == "on":
        assert out["during"] > 10_000  # torch, timm, transformers and the models: far more than this
    else:
        assert out["during"] == 0


def test_a_full_collection_skips_the_frozen_objects() -> None:
    """The point of it, on a hand-made heap: 200,000 live objects in cycles make a full collection walk
    them all until they are frozen; after the freeze the same collection sees only new objects."""
    out = run_python("""
import gc, json
from app.compute import freeze_heap

class Node:
    def __init__(self): self.me = self
heap = [Node() for _ in range(200_000)]
gc.collect()
seen_before = len(gc.get_objects(generation=2))
frozen = freeze_heap()
seen_after = len(gc.get_objects(generation=2))
print(json.dumps({"before": seen_before, "after": seen_after, "frozen": frozen}))
""")
    assert out["before"] > 200_000
    assert out["frozen"] >= 200_000
    assert out["after"] < 1_000  # what the collector still walks: the objects made after the freeze
