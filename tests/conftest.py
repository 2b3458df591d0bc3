"""What every folder of tests/ shares: the test app (tiny random models, CPU, nothing downloads), the same app
on a live uvicorn server (``live_server``, for the page tests and the proxy-header tests) and a helper for
event loops. The inputs themselves (photos, tiny models, settings) are built in :mod:`tests.factories`;
each folder's own conftest.py holds what only that folder needs:

- ``tests/models/``: the framework-free analysis core (``models/``), no web app;
- ``tests/services/``: services, executors, caches, jobs and their budgets;
- ``tests/api/``: the HTTP routes through the app (TestClient), the CLI and the fuzzer;
- ``tests/browser/``: pages in headless Chromium (Playwright) and the notebook;
- ``tests/cluster/``: the Ray backend.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

# Re-exported for tests that import them from here; new code imports them from tests.factories.
from tests.factories import (  # noqa: F401
    ARTIFACTS,
    TINY_SPECS,
    TINY_VIT_KWARGS,
    make_tiny_vit,
    minilm_shaped_bert,
    tiny_settings,
    tiny_text_settings,
)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return tiny_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def app_client() -> Iterator[Callable[[Settings], TestClient]]:
    """Factory: ``client = app_client(settings)``, a started TestClient of ``create_app(settings)``; every
    client made is closed (the app's shutdown runs) after the test."""
    opened: list[TestClient] = []

    def start(settings: Settings) -> TestClient:
        c = TestClient(create_app(settings))
        c.__enter__()
        opened.append(c)
        return c

    yield start
    for c in reversed(opened):
        c.__exit__(None, None, None)


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """``create_app(settings)`` on uvicorn in a daemon thread on a free 127.0.0.1 port; yields its base URL and
    stops the server on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server() -> Iterator[Callable[[Settings], str]]:
    """Factory: ``base_url = live_server(settings)``; every server started is stopped after the test."""
    with ExitStack() as stack:
        yield lambda settings: stack.enter_context(serve(settings))


def run_in_own_loop(coro_fn, *args):
    """``asyncio.run(coro_fn(*args))`` on a thread of its own: Playwright's sync API (a session fixture of the
    browser tests) keeps an event loop running on the main thread for the rest of the session, so a later
    test's ``asyncio.run`` on the main thread would fail."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn(*args))).result()


FRESH_CHILD = "ATLAS_FRESH_PROCESS_CHILD"


SERVED_MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}


def pytest_pyfunc_call(pyfuncitem):
    """``@pytest.mark.fresh_process``: the test runs again in a new interpreter (``python -m pytest NODEID``)
    and passes only if it passes there. Tests that measure the process's own peak resident set (VmHWM) need
    it: in a long session, threads and allocator arenas left by earlier tests (live servers, Chromium's
    driver, executor pools) move that peak, so the same test would pass alone and fail in the suite."""
    if pyfuncitem.get_closest_marker("fresh_process") is None or os.environ.get(FRESH_CHILD):
        return None
    config = pyfuncitem.config
    cmd = [sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        cmd,
        cwd=config.rootpath,
        # the allocator of `make run` and the image (Makefile, Dockerfile): the bound these tests check is the
        # served process's; with glibc's default arenas (8 per core) the same test's peak varied by ~100 MB
        env={**SERVED_MALLOC, **os.environ, FRESH_CHILD: "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        pytest.fail(
            f"failed in a fresh process:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}", pytrace=False
        )
    return True


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``python -c code *args`` in a child process from the repository root (a fresh interpreter: nothing
    this process imported or set counts) and return the JSON its last line of output prints; the child must
    exit 0 (else its stderr's tail is the failure)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def burst(calls: list[Callable[[], Any]], started: Callable[[], bool], gate: Any) -> list:
    """Run ``calls`` at once on threads of their own; when ``started()`` is true (or after 10 s) open ``gate``
    (a ``threading.Event`` the work waits on) and return the results in order."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        deadline = time.monotonic() + 10
        while not started() and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        return [f.result() for f in futures]


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "the condition") -> None:
    """Poll ``condition`` instead of sleeping a fixed time: a loaded CI machine may be slow to get there."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
