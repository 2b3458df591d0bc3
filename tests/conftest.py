"""What every folder of tests/ shares: the test app (tiny random models, CPU, nothing downloads) and a helper
for event loops. The inputs themselves (photos, tiny models, settings) are built in :mod:`tests.factories`;
each folder's own conftest.py holds what only that folder needs:

- ``tests/models/``: the framework-free analysis core (``models/``), no web app;
- ``tests/services/``: services, executors, caches, jobs and their budgets;
- ``tests/api/``: the HTTP routes through the app (TestClient), the CLI and the fuzzer;
- ``tests/browser/``: pages in headless Chromium (Playwright) and the notebook;
- ``tests/cluster/``: the Ray backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


def run_in_own_loop(coro_fn, *args):
    """``asyncio.run(coro_fn(*args))`` on a thread of its own: Playwright's sync API (a session fixture of the
    browser tests) keeps an event loop running on the main thread for the rest of the session, so a later
    test's ``asyncio.run`` on the main thread would fail."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn(*args))).result()
