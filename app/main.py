"""The FastAPI application: ``create_app()`` with a lifespan that loads the default models.

Run with ``python -m app serve`` (``make run`` does this; see app/cli.py) or ``uvicorn app.main:create_app --factory``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Scope

from app.compute import freeze_heap
from app.errors import install_error_handlers
from app.middleware import (
    BodySizeLimit,
    ClientAddress,
    EarlyRefusal,
    RequestContext,
    upload_route_matcher,
)
from app.openapi import install_openapi
from app.routers import (
    apidocs,
    distance,
    feature_sets,
    features,
    health,
    influence,
    pages,
    paper1,
    text,
    vision,
    vit_embeddings,
)
from app.routers import value_norms as value_norms_router  # issue 15.1: value-weighted attention
from app.services.images import sample_hashes
from app.settings import Settings, get_settings
from app.state import AppState

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("atlas")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Worker threads that hold the GIL hand it over after this interval: the event loop (health
        # checks, 503s) waits at most about this long for it (Python's default is 5 ms).
        sys.setswitchinterval(settings.server.gil_switch_interval_ms / 1000)
        state = AppState.create(settings)
        app.state.atlas = state
        is_upload("POST", "/")  # build the upload-route table (from the OpenAPI schema) before any request
        if settings.server.preload:
            log.info("loading %s on %s (%s)", settings.models.default_vision_model, state.device, state.dtype)
            await run_in_threadpool(state.vision_store.preload, [settings.models.default_vision_model], True)
            text_defaults = [settings.models.default_text_model, settings.models.default_seq2seq_model]
            await run_in_threadpool(state.text_store.preload, text_defaults)  # failures: 503 per request
            for hook in app.state.preload_hooks:
                await run_in_threadpool(hook, state)
            # the sample photos' JPEG bytes and hashes, once, off the event loop (sample requests read them)
            await run_in_threadpool(sample_hashes)
        if settings.server.gc_freeze:  # full GC collections then walk only what requests create
            log.info("froze %d start-up objects for the garbage collector", freeze_heap())
        yield
        state.shutdown()

    app = FastAPI(
        title="Attention Atlas",
        summary="See what attention does inside Transformers.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: app/routers/apidocs.py (local assets; FastAPI's use a CDN)
        redoc_url=None,
    )
    limit_message = f"The upload is too large: the limit is {settings.limits.max_upload_mb:g} MB."
    # read on the first request: after the routers below, through install_openapi's own app.openapi
    is_upload = upload_route_matcher(lambda: app.openapi())
    # Added last = outermost: request id and security headers wrap everything, then the host check, then
    # the client's name (trusted proxies only), refusals that need no body, and the body limit by route.
    app.add_middleware(
        BodySizeLimit,
        max_upload_bytes=settings.limits.max_upload_bytes
        + 64 * 1024,  # multipart overhead on top of the file
        max_json_bytes=settings.server.max_json_kb * 1024,
        upload_message=limit_message,
        is_upload=is_upload,
    )
    app.add_middleware(EarlyRefusal, check=early_refusal(is_upload))
    app.add_middleware(ClientAddress, trusted_proxies=settings.server.trusted_proxies)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.server.allowed_hosts)
    app.add_middleware(RequestContext)
    app.state.settings = settings
    app.state.preload_hooks = []  # callables(state) run in the lifespan, after the default models
    install_error_handlers(app)
    install_openapi(app)  # OpenAPI links from the analyze responses to the routes that take their ids
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    app.include_router(health.router)
    app.include_router(vision.router)
    app.include_router(features.router)
    app.include_router(feature_sets.router)
    app.include_router(text.router)
    app.include_router(value_norms_router.router)
    app.include_router(paper1.router)
    app.include_router(vit_embeddings.router)
    app.include_router(distance.router)
    app.include_router(pages.router)
    app.include_router(influence.router)  # /influence and /api/influence (issue 15)
    app.include_router(influence.api)
    from app.routers import influence_ablation  # issue 15, items 3 and 5 (kept apart: a one-line hook)

    app.include_router(influence_ablation.router)  # /api/influence/{ablate,heads,importance,logit-lens}
    app.include_router(apidocs.router)
    return app


def early_refusal(is_upload: Callable[[str, str], bool]) -> Callable[[Scope, str, str, str | None], None]:
    """Checks that refuse an upload before its body is read: the client's dataset-job quota and its share
    of the CPU pool and the model queue (:class:`app.compute.Busy` becomes 503 + Retry-After)."""

    def check(scope: Scope, method: str, path: str, client: str | None) -> None:
        state: AppState | None = getattr(scope["app"].state, "atlas", None)
        if state is None or method != "POST":
            return
        if path == "/api/distance/jobs":
            state.distance_jobs.check_room(client)
        if is_upload(method, path):
            state.cpu.check_owner(client)
            state.queue.check_owner(client)

    return check
