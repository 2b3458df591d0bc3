"""OpenAPI links: say where an id in one response is used next, so clients and fuzzers can follow them.

FastAPI writes no ``links`` (OpenAPI 3.1, section 4.8.20 "Link Object"). Without them a stateful fuzzer such
as schemathesis only ever sends random ``analysis_id``s and never reaches the analysis routes. This module
post-processes FastAPI's generated schema once (``install_openapi(app)`` replaces ``app.openapi``):

- ``POST /api/vision/analyze`` -> ``analysis_id`` to the patch-attention, rollout, image and distance views;
  ``image_hash`` back to ``POST /api/vision/analyze`` (re-analyse the same upload with other options);
- ``POST /api/text/analyze`` -> ``analysis_id`` to the overview, layer and head views;
- ``POST /api/distance/jobs`` and ``GET /api/distance/jobs/{job_id}`` -> ``job_id`` to the status and cancel
  routes.

It also describes multipart form bodies the way they travel: a form field cannot carry JSON ``null`` (an
omitted field is FastAPI's ``None``), so the ``anyOf [X, null]`` that ``X | None`` produces becomes ``X``, and a
file part gets ``format: binary`` so clients send it as a file, not as a text field.

Links are found by path and method, not by operation id, so they survive renamed handlers, and a link whose
source or target route does not exist (an older or newer router) is skipped rather than written broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI


@dataclass(frozen=True)
class Link:
    """``source`` response field -> ``target`` parameter (``path.x`` / ``query.x``) or request body field."""

    name: str
    source: tuple[str, str]  # (method, path) whose 2xx responses carry the field
    field: str  # top-level response field, e.g. "analysis_id"
    target: tuple[str, str]  # (method, path) that takes it
    parameter: str | None = None  # "path.analysis_id"; None: the field goes into the request body
    description: str = ""


VISION_ANALYZE = ("post", "/api/vision/analyze")
TEXT_ANALYZE = ("post", "/api/text/analyze")
JOB_START = ("post", "/api/distance/jobs")
JOB_STATUS = ("get", "/api/distance/jobs/{job_id}")
JOB_CANCEL = ("post", "/api/distance/jobs/{job_id}/cancel")

_VISION_VIEWS = {
    "PatchAttention": "/api/vision/analysis/{analysis_id}/attention",
    "Rollout": "/api/vision/analysis/{analysis_id}/rollout",
    "AnalysisImage": "/api/vision/analysis/{analysis_id}/image.png",
    "AttentionDistance": "/api/distance/analysis/{analysis_id}",
}
_TEXT_VIEWS = {
    "TextOverview": "/api/text/analysis/{analysis_id}",
    "TextLayer": "/api/text/analysis/{analysis_id}/layer",
    "TextHead": "/api/text/analysis/{analysis_id}/head",
}

LINKS: tuple[Link, ...] = (
    *(
        Link(name, VISION_ANALYZE, "analysis_id", ("get", path), "path.analysis_id", "the analysis just made")
        for name, path in _VISION_VIEWS.items()
    ),
    Link(
        "ReanalyzeByHash",
        VISION_ANALYZE,
        "image_hash",
        VISION_ANALYZE,
        None,
        "the same upload again, without re-sending it (other model, resolution or rollout options)",
    ),
    *(
        Link(name, TEXT_ANALYZE, "analysis_id", ("get", path), "path.analysis_id", "the analysis just made")
        for name, path in _TEXT_VIEWS.items()
    ),
    Link("JobStatus", JOB_START, "job_id", JOB_STATUS, "path.job_id", "poll the job"),
    Link("CancelJob", JOB_START, "job_id", JOB_CANCEL, "path.job_id", "cancel the job"),
    Link("CancelPolledJob", JOB_STATUS, "job_id", JOB_CANCEL, "path.job_id", "cancel the job"),
)


def _operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    return schema.get("paths", {}).get(path, {}).get(method)


def _response_has_field(response: dict[str, Any], schema: dict[str, Any], field: str) -> bool:
    """Whether the response's JSON schema declares ``field`` (following one ``$ref``)."""
    body = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = body.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        body = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
    return field in body.get("properties", {})


def add_links(schema: dict[str, Any], links: tuple[Link, ...] = LINKS) -> dict[str, Any]:
    """Write ``links`` into the 2xx responses of ``schema`` (in place; idempotent). Returns ``schema``."""
    for link in links:
        source = _operation(schema, *link.source)
        target = _operation(schema, *link.target)
        if source is None or target is None or "operationId" not in target:
            continue
        definition: dict[str, Any] = {"operationId": target["operationId"]}
        expression = f"$response.body#/{link.field}"
        if link.parameter is None:
            definition["requestBody"] = {link.field: expression}
        else:
            definition["parameters"] = {link.parameter: expression}
        if link.description:
            definition["description"] = link.description
        for status, response in source.get("responses", {}).items():
            if str(status).startswith("2") and _response_has_field(response, schema, link.field):
                response.setdefault("links", {})[link.name] = definition
    return schema


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``anyOf [X, {type: null}]`` -> ``X`` (keeping title, description, default); files get ``format: binary``."""
    branches = prop.get("anyOf")
    if isinstance(branches, list):
        kept = [b for b in branches if b.get("type") != "null"]
        if len(kept) == 1 and len(kept) < len(branches):
            prop = {**{k: v for k, v in prop.items() if k not in ("anyOf", "default")}, **kept[0]}
            if prop.get("default") is None:
                prop.pop("default", None)
    if prop.get("type") == "string" and "contentMediaType" in prop:
        prop = {**prop, "format": "binary"}
    if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
        prop = {**prop, "items": _without_null(prop["items"])}
    return prop


def tighten_multipart(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the properties of every multipart/form-data body schema with :func:`_without_null` (in place)."""
    components = schema.get("components", {}).get("schemas", {})
    for methods in schema.get("paths", {}).values():
        for op in methods.values():
            content = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if not content:
                continue
            body = content.get("schema", {})
            ref = body.get("$ref", "")
            if ref.startswith("#/components/schemas/"):
                body = components.get(ref.rsplit("/", 1)[1], {})
            props = body.get("properties", {})
            for name, prop in props.items():
                props[name] = _without_null(prop)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with FastAPI's generator, then :func:`tighten_multipart` and :func:`add_links`
    (computed once)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(tighten_multipart(generate()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
