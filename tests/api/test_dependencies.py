"""Every route dependency is a coroutine, so no request hops to FastAPI's thread pool to resolve it.

FastAPI runs a plain ``def`` dependency with ``run_in_threadpool``: one worker-thread hop per request. Under a
class's load those threads are busy rendering pages and wait for the GIL, and ``/api/health`` waited with
them (issue 14's health p99 in cluster mode). Checked two ways: statically over every route's dependency
tree, and by making the thread pool fail while the routes answer."""

from __future__ import annotations

import inspect

import fastapi.dependencies.utils as fastapi_deps
from fastapi.routing import APIRoute


def sub_dependencies(dependant):
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep
        yield from sub_dependencies(dep)


def api_routes(routes):
    """Every APIRoute, inside included routers too (FastAPI 0.13x keeps an included router whole)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None) or getattr(route, "app", None)
        yield from api_routes(getattr(inner, "routes", ()))


def test_every_dependency_is_a_coroutine(client):
    routes = list(api_routes(client.app.routes))
    assert any(r.path == "/api/health" for r in routes)  # the walk reaches the included routers
    sync = {
        f"{route.path}: {dep.call.__module__}.{dep.call.__qualname__}"
        for route in routes
        for dep in sub_dependencies(route.dependant)
        if not inspect.iscoroutinefunction(dep.call)
    }
    assert not sync, sorted(sync)


def test_api_routes_resolve_without_the_thread_pool(client, monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a dependency was sent to the thread pool")

    monkeypatch.setattr(fastapi_deps, "run_in_threadpool", no_pool)
    assert client.get("/api/health").status_code == 200
    assert client.get("/api/models").status_code == 200
    # the text layer routes resolve three nested dependencies (state, options, layer view) before the 404
    r = client.get(
        "/api/text/analysis/nope/layer", params={"kind": "encoder_self", "layer": 0, "merge_words": True}
    )
    assert r.status_code == 404, r.text
