from __future__ import annotations

from fastapi import APIRouter

from app.deps import StateDep
from app.schemas.common import HealthResponse, ModelsResponse, ModelSummary

router = APIRouter(prefix="/api", tags=["meta"])


@router.get("/health", response_model=HealthResponse)
async def health(state: StateDep) -> HealthResponse:
    return HealthResponse(
        status="ok",
        device=str(state.device),
        dtype=str(state.dtype).removeprefix("torch."),
        loaded_models=[*state.vision_store.loaded(), *state.text_store.loaded()],
        queue_pending=state.queue.pending,
        queue_size=state.queue.max_pending,
        backend=state.settings.cluster.backend,
        replicas=await state.backend.replicas(),
    )


@router.get("/models", response_model=ModelsResponse)
async def list_models(state: StateDep) -> ModelsResponse:
    """Every allowlisted model; users can only pick from this list."""
    s = state.settings
    loaded = set(state.vision_store.loaded())
    out = [
        ModelSummary(
            id=spec.id,
            task="vision",
            label=spec.label or spec.id,
            source=spec.source,
            loaded=spec.id in loaded,
            default=spec.id == s.models.default_vision_model,
        )
        for spec in s.models.vision_specs().values()
    ]
    loaded_text = set(state.text_store.loaded())
    task = {"encoder": "text", "seq2seq": "seq2seq", "causal": "causal-lm"}
    out += [
        ModelSummary(
            id=spec.id,
            task=task[spec.kind],
            label=spec.label or spec.id,
            source=spec.source,
            loaded=spec.id in loaded_text,
            default=spec.id in (s.models.default_text_model, s.models.default_seq2seq_model),
        )
        for spec in s.models.text_specs().values()
    ]
    return ModelsResponse(models=out)
