"""Shared fixtures: tiny random-init models built in process (nothing downloads in tests)."""

from __future__ import annotations

import pytest
import timm
import torch

from models.vision.registry import VisionModelSpec

TINY_VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=10)


def make_tiny_vit(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {**TINY_VIT_KWARGS, **overrides}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).eval()


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    return make_tiny_vit()


TINY_SPECS = [
    VisionModelSpec(
        id="tiny_vit",
        arch_tag="vit_tiny_patch16_224.random",
        source="random",
        label="Tiny random ViT (tests)",
        timm_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=1000),
    ),
    VisionModelSpec(
        id="tiny_deit_distilled",
        arch_tag="deit_tiny_distilled_patch16_224.random",
        source="random",
        label="Tiny random distilled DeiT (2 prefix tokens, tests)",
        timm_kwargs=dict(img_size=48, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=10),
    ),
]


# --- web app fixtures ---------------------------------------------------------------------------
from collections.abc import Iterator  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402


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


def minilm_shaped_bert():
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


def tiny_settings(tmp_path, **overrides) -> Settings:
    """Settings for tests: tiny random models, CPU, a temp cache dir."""
    base = dict(
        device="cpu",
        cache_dir=tmp_path / "cache",
        vision_models=[s for s in TINY_SPECS],
        default_vision_model=TINY_SPECS[0].id,
        max_upload_mb=1.0,
        max_image_pixels=4_000_000,
        allowed_hosts=["testserver", "127.0.0.1", "localhost"],  # TestClient's Host is "testserver"
        **tiny_text_settings(),
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return tiny_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


# --- browser fixtures: live server + headless Debian Chromium via Playwright (shared by the page tests) ----
# `live_server(settings) -> base_url` serves create_app(settings) with uvicorn in a background thread on a free
# localhost port; `browser` is one Chromium per session (never downloaded: /usr/bin/chromium, and a missing
# browser FAILS the test); `page` is a fresh 1280x800 context per test. Screenshots go to ARTIFACTS.
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture
def live_server() -> Iterator[Callable[[Settings], str]]:
    """Factory: ``base_url = live_server(settings)``; every server started is stopped after the test."""
    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(settings: Settings) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium (``/usr/bin/chromium``) driven by Playwright; fails if it is missing."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium package"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh 1280x800 page; ``page.js_errors`` collects uncaught page errors and console errors."""
    ARTIFACTS.mkdir(exist_ok=True)
    # bypass_csp lets Playwright's own wait_for_function(string) helpers run; the app's pages are checked
    # under the real Content-Security-Policy by tests/test_browser_csp.py.
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True, bypass_csp=True
    )
    pg = context.new_page()
    pg.js_errors = []
    pg.on("pageerror", lambda e: pg.js_errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: m.type == "error" and pg.js_errors.append(f"console: {m.text}"))
    yield pg
    context.close()


# --- pages under the app's real Content-Security-Policy (no bypass_csp) -------------------------------------
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "(inline)"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def strict_page(browser):
    """A page that obeys the app's CSP, with violations (``window.__csp``) and console errors recorded.
    Only CSS selectors and ``page.evaluate`` work here: Playwright's string predicates need eval."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(RECORD_VIOLATIONS)
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(f"console: {m.text}"))
    yield pg
    context.close()


def poll(page, script: str, what: str, timeout_s: float = 60):
    """Evaluate ``script`` (a function source) until it returns something truthy; CSP-proof polling."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(script)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_selector("body")  # one round trip to the page between tries


def run_in_own_loop(coro_fn, *args):
    """``asyncio.run(coro_fn(*args))`` on a thread of its own: Playwright's sync API (a session fixture of the
    browser tests) keeps an event loop running on the main thread for the rest of the session, so a later
    test's ``asyncio.run`` on the main thread would fail."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn(*args))).result()
