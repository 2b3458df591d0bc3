"""The head-importance map as a background job (issue 15, item 3): one model, one ablation mode, over the
model's bundled evaluation set (:mod:`models.influence.importance`).

- Computed once: a finished map is written to ``<cache_dir>/influence/`` (JSON, named by the model id, the
  mode and a fingerprint of the model's spec and the evaluation set) and kept in ``state.views``; later
  requests answer from there at once, in this process and after a restart.
- Bounded like the distance jobs: the same job registry (``state.distance_jobs``: slots, per-client quota,
  503 + Retry-After when full), progress as ``done`` of ``total`` ablations, cancel by subscription.
- Each ablation is one compute-queue job (:func:`app.backend.local.wait_for_room` waits for room,
  cancellably), so single requests interleave with a sweep ablation by ablation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from app.backend.local import wait_for_room
from app.jobs import Job, Subscription, response_fields
from app.schemas.influence_ablation import BlockShape, ImportanceJobResponse, ImportanceResult
from app.serialization import typed_array
from app.services.influence_ablation import Target, eval_set_label
from app.state import AppState
from models.influence.ablation_run import eval_measure, reference_means
from models.influence.importance import SENTENCE_PAIRS, ImportanceMap, head_importance

EVAL_VERSION = 1  # bump when an evaluation set or a metric changes: cached maps are then recomputed
HEADLINE = {"dates": "exact_match", "pair": "mean_abs_delta_cos", "vision": "cls_cos"}


def _fingerprint(t: Target, mode: str) -> str:
    extra = SENTENCE_PAIRS.read_bytes() if t.kind == "pair" else b""
    spec = repr(t.obj.spec).encode() + extra + f"|{mode}|{EVAL_VERSION}".encode()
    return hashlib.sha256(spec).hexdigest()[:16]


def cache_path(state: AppState, t: Target, mode: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", t.id)[:80]
    return (
        Path(state.settings.server.cache_dir)
        / "influence"
        / f"importance-{safe}-{mode}-{_fingerprint(t, mode)}.json"
    )


def to_result(t: Target, family: str, imap: ImportanceMap) -> ImportanceResult:
    blocks = [
        BlockShape(block=b, layers=a.shape[0], heads=a.shape[1])  # type: ignore[arg-type]
        for b, a in next(iter(imap.values.values())).items()
    ]
    return ImportanceResult(
        family=family,  # type: ignore[arg-type]
        model=t.id,
        mode=imap.mode,  # type: ignore[arg-type]
        eval_set=eval_set_label(t.kind),
        n_examples=imap.n_examples,
        metrics=list(imap.values),
        headline=HEADLINE[t.kind],
        base=imap.base,
        blocks=blocks,
        values={m: {b: typed_array(a, "f8") for b, a in per.items()} for m, per in imap.values.items()},
    )


def load_cached(state: AppState, t: Target, mode: str) -> ImportanceResult | None:
    """The map from memory, else from disk (then kept in memory); None when never computed."""
    path = cache_path(state, t, mode)
    hit = state.views.get(f"importance|{path.name}")
    if hit is not None:
        return hit
    try:
        result = ImportanceResult.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None
    state.views.put(f"importance|{path.name}", result)
    return result


def _store(state: AppState, t: Target, mode: str, result: ImportanceResult) -> None:
    path = cache_path(state, t, mode)
    state.views.put(f"importance|{path.name}", result)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(result.model_dump_json())
        tmp.replace(path)  # atomic: a reader never sees half a file
    except OSError:
        pass  # the memory copy still serves this process


def sweep(state: AppState, t: Target, family: str, mode: str, job: Job) -> ImportanceResult:
    """The job's body: build the measure and each ablation in the compute queue, one step at a time."""
    cancel = job.cancel_event

    def step(fn: Any) -> Any:
        future = wait_for_room(lambda: state.queue.submit(fn, owner=f"job:{job.id}"), cancel, "the model")
        return future.result()  # type: ignore[attr-defined]

    measured, n = step(lambda: eval_measure(t.kind, t.obj))
    means = step(lambda: reference_means(t.kind, t.obj)) if mode == "mean" else None
    imap = head_importance(measured, mode, n, job.report, cancel, step, means)  # type: ignore[arg-type]
    result = to_result(t, family, imap)
    _store(state, t, mode, result)
    return result


def start(state: AppState, t: Target, family: str, mode: str, owner: str | None) -> tuple[Subscription, bool]:
    """Start (or share, or reuse) the sweep; JobsBusy (503) when the registry or the client's quota is full."""
    key = f"importance|{t.id}|{mode}|{_fingerprint(t, mode)}"
    registry = state.distance_jobs
    reused = registry.reuse_done(key, owner)
    if reused is not None:
        return reused, True
    from models.influence.ablation import all_heads

    total = len(all_heads(t.module)) + 1
    params = dict(model=t.id, family=family, mode=mode)
    sub = registry.submit(
        lambda job: sweep(state, t, family, mode, job), "importance", params, key, total, owner
    )
    return sub, False


def response(
    sub: Subscription | None, result: ImportanceResult | None = None, reused: bool = False
) -> ImportanceJobResponse:
    if sub is None:  # from the cache: no job
        return ImportanceJobResponse(
            status="done", done=1, total=1, elapsed_s=0.0, reused=True, result=result
        )
    return ImportanceJobResponse(
        **response_fields(sub, "/api/influence/importance/jobs", reused),
        result=sub.result if sub.status == "done" else None,
    )


def as_json(result: ImportanceResult) -> dict[str, Any]:
    return json.loads(result.model_dump_json())
