"""OpenAPI links: say where an id in one response is used next, so clients and fuzzers can follow them.

FastAPI writes no ``links`` (OpenAPI 3.1, section 4.8.20 "Link Object"). Without them a stateful fuzzer such
as schemathesis only ever sends random ``analysis_id``s and never reaches the analysis routes. This module
post-processes FastAPI's generated schema once (``install_openapi(app)`` replaces ``app.openapi``):

- ``POST /api/vision/analyze`` -> ``analysis_id`` to the patch-attention, rollout, image and distance views;
  ``image_hash`` back to ``POST /api/vision/analyze`` (re-analyse the same upload with other options);
- ``POST /api/text/analyze`` -> ``analysis_id`` to the overview, layer and head views;
- ``POST /api/distance/jobs`` and ``GET /api/distance/jobs/{job_id}`` -> ``job_id`` to the status and cancel
  routes.

It also describes query parameters and multipart form bodies the way they travel: neither can carry JSON
``null`` (an omitted field is FastAPI's ``None``), so the ``anyOf [X, null]`` that ``X | None`` produces
becomes ``X``, and a file part gets ``format: binary`` so clients send it as a file, not as a text field.

It states which combinations of form fields a multipart body accepts (:data:`FORM_CHOICES`: exactly one
image source; files only with ``source=upload``), and it writes the operator's allowlists (model ids, sample
names, the text length limit) into the fields that validation checks against them (:func:`add_allowlists`).

Links are found by path and method, not by operation id, so they survive renamed handlers, and a link whose
source or target route does not exist (an older or newer router) is skipped rather than written broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from app.settings import Settings
from models.vision.samples import SAMPLE_NAMES


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
    "AttentionEntropy": "/api/vision/analysis/{analysis_id}/entropy",
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
    """``anyOf [X, {type: null}]`` -> ``X`` (keeping title and description); files get ``format: binary``."""
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


def without_json_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite query and path parameters and the properties of every multipart/form-data body with
    :func:`_without_null` (in place): neither can carry JSON ``null``."""
    components = schema.get("components", {}).get("schemas", {})
    for methods in schema.get("paths", {}).values():
        for op in methods.values():
            for param in op.get("parameters", []):
                if param.get("in") in ("query", "path") and "schema" in param:
                    param["schema"] = _without_null(param["schema"])
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


def _properties(schema: dict[str, Any], op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The properties of an operation's request body (JSON or multipart), following one ``$ref``."""
    for content in op.get("requestBody", {}).get("content", {}).values():
        body = content.get("schema", {})
        ref = body.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            body = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
        return body.get("properties", {})
    return {}


def _restrict(prop: dict[str, Any], **keywords: Any) -> None:
    """Add JSON-schema ``keywords`` to a string or integer property (to that branch of ``X | None``)."""
    kinds = ("string", "integer")
    branches = [b for b in prop.get("anyOf", []) if b.get("type") in kinds]
    for target in branches or ([prop] if prop.get("type") in kinds else []):
        target.update(keywords)


def add_allowlists(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Write the operator's allowlists into the schema, so it says what validation accepts (in place).

    Only this module sees them at run time: the model ids (settings), their input resolutions (when every
    allowlisted model declares them), the sample photo names, and the text length limit. A client or fuzzer
    then sends a valid model instead of guessing strings that get a 400.
    """
    vision = settings.models.vision_specs()
    vision_ids = sorted(vision)
    text_ids = sorted(settings.models.text_specs())
    image_fields: dict[str, dict[str, Any]] = {"model": {"enum": vision_ids}}
    if all(spec.resolutions for spec in vision.values()):  # else some are known only once loaded
        image_fields["resolution"] = {
            "enum": sorted({r for spec in vision.values() for r in spec.resolutions})
        }
    where = {
        ("post", "/api/vision/analyze"): {**image_fields, "sample": {"enum": list(SAMPLE_NAMES)}},
        ("post", "/api/distance/jobs"): image_fields,
        ("get", "/api/vit-embeddings/position-similarity"): {"model": {"enum": vision_ids}},
        ("get", "/api/vit-embeddings/patch-filters"): {"model": {"enum": vision_ids}},
        ("get", "/api/vision/samples/{name}.jpg"): {"name": {"enum": list(SAMPLE_NAMES)}},
        ("get", "/api/text/offsets"): {"model": {"enum": text_ids}},
        ("post", "/api/text/analyze"): {
            "model": {"enum": text_ids},
            "text": {"maxLength": settings.limits.max_text_chars, "pattern": r"\S"},
            "target": {"maxLength": settings.limits.max_text_chars},
        },
    }
    for (method, path), fields in where.items():
        op = _operation(schema, method, path)
        if op is None:
            continue
        props = _properties(schema, op)
        params = {p.get("name"): p.get("schema", {}) for p in op.get("parameters", [])}
        for name, keywords in fields.items():
            prop = props.get(name, params.get(name))
            if prop is not None:
                _restrict(prop, **keywords)
    return schema


# Which combinations of form fields a multipart body accepts (JSON Schema ``oneOf``), as the routes check.
FORM_CHOICES: dict[tuple[str, str], list[dict[str, Any]]] = {
    # exactly one image source
    ("post", "/api/vision/analyze"): [
        {"required": ["image"]},
        {"required": ["sample"]},
        {"required": ["image_hash"]},
    ],
    # the bundled photos take no files; an upload needs at least one
    ("post", "/api/distance/jobs"): [
        {"properties": {"source": {"const": "samples"}}, "not": {"required": ["files"]}},
        {
            "properties": {"source": {"const": "upload"}, "files": {"minItems": 1}},
            "required": ["source", "files"],
        },
    ],
}


def add_form_choices(schema: dict[str, Any], choices: dict = FORM_CHOICES) -> dict[str, Any]:
    """Write :data:`FORM_CHOICES` into the multipart body schemas as ``oneOf`` (in place; idempotent)."""
    components = schema.get("components", {}).get("schemas", {})
    for (method, path), one_of in choices.items():
        op = _operation(schema, method, path)
        content = (op or {}).get("requestBody", {}).get("content", {}).get("multipart/form-data")
        if not content:
            continue
        body = content.get("schema", {})
        ref = body.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            body = components.get(ref.rsplit("/", 1)[1], body)
        body["oneOf"] = one_of
    return schema


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with FastAPI's generator, then :func:`without_json_null`,
    :func:`add_form_choices`, :func:`add_allowlists` (from ``app.state.settings``) and :func:`add_links`
    (computed once)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = add_form_choices(without_json_null(generate()))
            settings = getattr(app.state, "settings", None)
            if settings is not None:
                add_allowlists(schema, settings)
            app.openapi_schema = add_links(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
