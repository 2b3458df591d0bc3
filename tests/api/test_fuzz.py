"""schemathesis over every route of the ASGI app (tiny test models), with two properties only:

- no response is a server error (status >= 500);
- every 4xx is JSON with a ``detail``.

Those two hold whatever the schema says, so a schema that is looser than the validation (an operation that
rejects most generated data) shows up in the printed rejection table, not as a failure. Three tests:

1. every operation with generated data (positive and negative modes);
2. every OpenAPI link (app/openapi.py) followed from a real analysis, so the analysis routes get valid ids;
3. a short stateful run (schemathesis' state machine follows the links by itself).

``make test`` runs a bounded number of examples (a minute or two on 2 cores). ``make fuzz`` is the long run:
``ATLAS_FUZZ_EXAMPLES`` (per operation and mode), ``ATLAS_FUZZ_STATEFUL`` (state machine runs) and
``ATLAS_FUZZ_STEPS`` (steps per run) raise the budget.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi as schemathesis_asgi

from app.main import create_app
from tests.factories import tiny_settings

EXAMPLES = int(os.environ.get("ATLAS_FUZZ_EXAMPLES", "12"))
STATEFUL_RUNS = int(os.environ.get("ATLAS_FUZZ_STATEFUL", "4"))
STATEFUL_STEPS = int(os.environ.get("ATLAS_FUZZ_STEPS", "6"))

HYPOTHESIS = dict(
    deadline=None,
    database=None,
    derandomize=os.environ.get("ATLAS_FUZZ_RANDOM", "") == "",  # reproducible in make test
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


def problems(status: int, headers: Any, body: bytes) -> list[str]:
    """The two properties every response must have (empty list: fine)."""
    if status >= 500:
        return [f"server error {status}: {body[:200]!r}"]
    if 400 <= status < 500:
        content_type = _header(headers, "content-type")
        if not content_type.startswith("application/json"):
            return [f"{status} is not JSON (content-type {content_type!r})"]
        try:
            payload = json.loads(body)
        except ValueError:
            return [f"{status} body is not valid JSON: {body[:200]!r}"]
        if not isinstance(payload, dict) or "detail" not in payload:
            return [f"{status} JSON has no 'detail': {body[:200]!r}"]
    return []


def _header(headers: Any, name: str) -> str:
    value = headers.get(name) or headers.get(name.title()) or ""
    return value[0] if isinstance(value, list) else value


class Findings:
    """Status codes per operation and every response that broke a property."""

    def __init__(self) -> None:
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[str] = []
        self.details: dict[str, Counter] = defaultdict(Counter)

    def record(self, label: str, case: Any, response: Any) -> None:
        self.statuses[label][response.status_code] += 1
        if 400 <= response.status_code < 500:
            try:
                detail = str(json.loads(response.content).get("detail"))
            except (ValueError, AttributeError):
                detail = "?"
            self.details[label][f"{response.status_code} {_shape_of(detail)}"] += 1
        for problem in problems(response.status_code, response.headers, response.content):
            self.failures.append(f"{label}: {problem}\n    reproduce: {case.as_curl_command()}")

    def rejection_table(self) -> str:
        rows = []
        for label, counts in sorted(self.statuses.items()):
            total = sum(counts.values())
            rejected = sum(n for status, n in counts.items() if 400 <= status < 500)
            rows.append((rejected / total, label, total, dict(sorted(counts.items()))))
        rows.sort(reverse=True)
        lines = []
        for share, label, n, counts in rows:
            lines.append(f"{share:6.0%} 4xx  {label}  n={n}  {counts}")
            lines += [f"           {k} x{c}" for k, c in self.details[label].most_common(3)]
        return "\n".join(lines)


def _shape_of(detail: str) -> str:
    """A 4xx detail with the generated values cut out, so equal causes group together."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d+(\.\d+)?", "_", detail)[:110]


def fuzz_settings(tmp_path):
    """The tiny test settings, with job quotas high enough that a 503 here would be a real failure."""
    return tiny_settings(tmp_path, jobs_per_client=10_000, max_active_jobs=10_000, queue_size=10_000)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory) -> Iterator[schemathesis.schemas.BaseSchema]:
    app = create_app(fuzz_settings(tmp_path_factory.mktemp("fuzz")))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        yield schema
    finally:
        schemathesis_asgi.shutdown_lifespans()  # the ASGI lifespan (models, executors) ends with the module


def run_examples(strategy, max_examples: int, body) -> None:
    """Draw ``max_examples`` cases from ``strategy`` and call ``body(case)`` on each (hypothesis)."""

    @given(case=strategy)
    @settings(max_examples=max_examples, **HYPOTHESIS)
    def exercise(case) -> None:
        body(case)

    exercise()


# Valid model ids (the OpenAPI allowlists) reach the slow first calls, e.g. the offsets corpus of the tiny
# Marian (12 greedy generations, ~5 s on an idle 2-core machine): more than schemathesis' default 10 s when
# the machine is shared.
CALL_TIMEOUT_S = 60


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_covers_every_api_route(api_schema) -> None:
    labels = {op.label for op in operations(api_schema)}
    assert len(labels) >= 20
    for route in (
        "POST /api/vision/analyze",
        "GET /api/vision/analysis/{analysis_id}/rollout",
        "POST /api/text/analyze",
        "GET /api/text/analysis/{analysis_id}/head",
        "POST /api/distance/jobs",
        "GET /api/distance/jobs/{job_id}",
    ):
        assert route in labels
    # multipart bodies say what travels: no JSON null in a form field, files as binary parts
    doc = api_schema.raw_schema
    body = doc["paths"]["/api/vision/analyze"]["post"]["requestBody"]["content"]["multipart/form-data"][
        "schema"
    ]
    raw = json.dumps(doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body)
    assert '"null"' not in raw and '"format": "binary"' in raw
    # ... which field combinations they accept, and the operator's allowlists
    analyze = json.loads(raw)
    assert {"required": ["sample"]} in analyze["oneOf"]
    assert analyze["properties"]["model"]["enum"] == ["tiny_deit_distilled", "tiny_vit"]
    assert "astronaut" in analyze["properties"]["sample"]["enum"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_no_server_errors_and_json_4xx(api_schema, mode) -> None:
    findings = Findings()
    for op in operations(api_schema):
        try:
            run_examples(
                op.as_strategy(generation_mode=mode),
                EXAMPLES,
                lambda case, op=op: findings.record(op.label, case, case.call(timeout=CALL_TIMEOUT_S)),
            )
        except Unsatisfiable:  # with ATLAS_FUZZ_RANDOM (make fuzz) hypothesis prints "You can reproduce this
            # failure by adding @seed(...)" for each such operation first: that line is this case, not a failure
            assert mode is GenerationMode.NEGATIVE, op.label  # nothing to negate (no parameters, no body)
    print(
        f"\nschemathesis {mode.value}: share of 4xx per operation\n{findings.rejection_table()}",
        file=sys.stderr,
    )
    assert not findings.failures, "\n".join(findings.failures[:20])


def _links(schema: dict) -> Iterator[tuple[str, str, str, dict]]:
    """(source method, source path, link name, link) for every link in the raw OpenAPI document."""
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            for response in op.get("responses", {}).values():
                for name, link in response.get("links", {}).items():
                    yield method, path, name, link


def _operation_by_id(schema, operation_id: str):
    for op in operations(schema):
        if op.definition.raw.get("operationId") == operation_id:
            return op
    raise AssertionError(f"link target {operation_id} is not an operation of the schema")


def _field_of(expression: str) -> str:
    prefix = "$response.body#/"
    assert expression.startswith(prefix), expression
    return expression[len(prefix) :]


# The smallest valid request for each link target: these must succeed (2xx) with the linked id.
VALID_EXTRAS: dict[str, dict[str, Any]] = {
    "GET /api/vision/analysis/{analysis_id}/attention": {"query": {"layer": 0, "query": 0}},
    "GET /api/vision/analysis/{analysis_id}/entropy": {"query": {"layer": 0}},
    "GET /api/text/analysis/{analysis_id}/layer": {"query": {"kind": "encoder_self", "layer": 0}},
    "GET /api/text/analysis/{analysis_id}/head": {"query": {"kind": "encoder_self", "layer": 0}},
}


def _sources(schema) -> dict[str, dict]:
    """One real response body per link source: a sample analysis, a text analysis, a job and its status."""
    vision = schema["/api/vision/analyze"]["POST"]
    samples = schema["/api/vision/samples"]["GET"].Case().call().json()
    name = samples["samples"][0]["name"] if isinstance(samples, dict) else samples[0]["name"]
    made = {
        "POST /api/vision/analyze": vision.Case(
            body={"sample": name}, media_type="multipart/form-data"
        ).call(),
        "POST /api/text/analyze": schema["/api/text/analyze"]["POST"]
        .Case(body={"text": "The cat sat on the mat."}, media_type="application/json")
        .call(),
        "POST /api/distance/jobs": schema["/api/distance/jobs"]["POST"]
        .Case(body={"source": "samples"}, media_type="multipart/form-data")
        .call(),
    }
    for label, response in made.items():
        assert 200 <= response.status_code < 300, (label, response.status_code, response.content[:300])
    job_id = made["POST /api/distance/jobs"].json()["job_id"]
    made["GET /api/distance/jobs/{job_id}"] = (
        schema["/api/distance/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": job_id}).call()
    )
    return {label: response.json() for label, response in made.items()}


def test_links_reach_the_analysis_routes(api_schema) -> None:
    """Follow every link from a real response: a minimal request must succeed, generated ones never 5xx."""
    raw = api_schema.raw_schema
    links = list(_links(raw))
    targets = {link["operationId"] for *_, link in links}
    assert len(targets) >= 9, f"expected links to the analysis routes, got {sorted(targets)}"
    bodies = _sources(api_schema)
    findings = Findings()
    followed = 0
    for method, path, name, link in links:
        source = bodies.get(f"{method.upper()} {path}")
        assert source is not None, f"no real response for the source of link {name}"
        target = _operation_by_id(api_schema, link["operationId"])
        path_params = {
            key.split(".", 1)[1]: source[_field_of(expr)]
            for key, expr in link.get("parameters", {}).items()
            if key.startswith("path.")
        }
        body = {k: source[_field_of(v)] for k, v in link.get("requestBody", {}).items()}
        extras = VALID_EXTRAS.get(target.label, {})
        kwargs: dict[str, Any] = {"path_parameters": path_params, "query": extras.get("query")}
        if body:
            kwargs.update(body=body, media_type=next(iter(target.body)).media_type)
        minimal = target.Case(**{k: v for k, v in kwargs.items() if v})
        response = minimal.call()
        assert 200 <= response.status_code < 300, (
            name,
            target.label,
            response.status_code,
            response.content[:300],
        )
        findings.record(target.label, minimal, response)
        followed += 1

        def exercise(case, target=target, path_params=path_params, body=body) -> None:
            case.path_parameters = {**(case.path_parameters or {}), **path_params}
            if body and isinstance(case.body, dict):
                case.body = {**case.body, **body}
            findings.record(target.label, case, case.call())

        run_examples(
            target.as_strategy(generation_mode=GenerationMode.POSITIVE), max(3, EXAMPLES // 2), exercise
        )
    print(f"\nlinked routes: share of 4xx per operation\n{findings.rejection_table()}", file=sys.stderr)
    assert followed == len(links)
    assert not findings.failures, "\n".join(findings.failures[:20])


def test_stateful_run_follows_links_without_server_errors(api_schema) -> None:
    """schemathesis' own state machine: it chains analyze -> analysis routes through the OpenAPI links."""
    findings = Findings()

    class Machine(api_schema.as_state_machine()):
        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            findings.record(case.operation.label, case, response)

    Machine.run(
        settings=settings(max_examples=STATEFUL_RUNS, stateful_step_count=STATEFUL_STEPS, **HYPOTHESIS)
    )
    print(f"\nstateful: share of 4xx per operation\n{findings.rejection_table()}", file=sys.stderr)
    assert findings.statuses, "the state machine made no request"
    assert not findings.failures, "\n".join(findings.failures[:20])
