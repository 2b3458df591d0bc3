"""HTML pages. Server data reaches the page's ES modules through <script type="application/json">."""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from app.deps import StateDep
from app.services.catalog import model_cards, text_model_choices, vision_model_choices
from app.services.distance import MAX_FILES, MAX_IMAGES, sample_list
from app.services.figures import BOUNDS, FAR_POSITIONS
from app.state import AppState

ROOT = Path(__file__).resolve().parents[2]
templates = Jinja2Templates(directory=ROOT / "templates")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

router = APIRouter(include_in_schema=False)

NAV = [  # every page, the API docs and the model cards (issue 18: nothing reachable only from another page)
    ("/", "Home"),
    ("/text", "Text"),
    ("/vision", "Vision"),
    ("/offsets", "Offsets"),
    ("/distance", "Distance"),
    ("/positional", "Positional"),
    ("/scaling", "Scaling"),
    ("/vit-embeddings", "ViT embeddings"),
    ("/tour", "Tour"),
    ("/influence", "Influence"),
    ("/docs", "API docs"),
    ("/about-models", "About the models"),
]


def render(
    request: Request, template: str, active: str, title: str, data: dict | None = None
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"nav": NAV, "active": active, "title": title, "page_data": data or {}}
    )


@router.get("/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    """plotly.js from the installed ``plotly`` package: no CDN, works offline."""
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


def default_models(state: AppState) -> dict[str, str]:
    """The default model of each family, as the home page and the tour's live views name them."""
    m = state.settings.models
    return {
        "text_model": m.default_text_model,
        "seq2seq_model": m.default_seq2seq_model,
        "vision_model": m.default_vision_model,
    }


@router.get("/", response_class=HTMLResponse)
def home(request: Request, state: StateDep) -> HTMLResponse:
    return render(request, "home.html", "/", "Attention Atlas", default_models(state))


@router.get("/about-models", response_class=HTMLResponse)
def about_models(request: Request, state: StateDep) -> HTMLResponse:
    """Model cards: where each offered model comes from (the provenance the short labels leave out)."""
    return render(
        request, "about_models.html", "/about-models", "About the models", model_cards(state.settings)
    )


@router.get("/vision", response_class=HTMLResponse)
def vision_page(request: Request, state: StateDep) -> HTMLResponse:
    specs = state.settings.models.vision_specs()
    data = {
        "models": [
            {"id": s.id, "label": s.label or s.id, "resolutions": list(s.resolutions)} for s in specs.values()
        ],
        "default_model": state.settings.models.default_vision_model,
        "max_upload_mb": state.settings.limits.max_upload_mb,
    }
    return render(request, "vision.html", "/vision", "Vision attention explorer", data)


@router.get("/text", response_class=HTMLResponse)
def text_page(request: Request, state: StateDep) -> HTMLResponse:
    s = state.settings
    data = {
        **text_model_choices(s, "max_tokens"),
        "default_seq2seq_model": s.models.default_seq2seq_model,
        "max_text_chars": s.limits.max_text_chars,
    }
    return render(request, "text.html", "/text", "Text attention explorer", data)


@router.get("/positional", response_class=HTMLResponse)
def positional_page(request: Request) -> HTMLResponse:
    data = {"bounds": BOUNDS, "far_positions": list(FAR_POSITIONS)}
    return render(request, "positional.html", "/positional", "Positional encoding", data)


@router.get("/scaling", response_class=HTMLResponse)
def scaling_page(request: Request) -> HTMLResponse:
    return render(request, "scaling.html", "/scaling", "Why scale by 1/√d_k", {"bounds": BOUNDS})


@router.get("/tour", response_class=HTMLResponse)
def tour_page(request: Request, state: StateDep) -> HTMLResponse:
    data = {"bounds": BOUNDS, **default_models(state)}  # the tour's live views use the default models
    return render(request, "tour.html", "/tour", "Paper tour", data)


@router.get("/vit-embeddings", response_class=HTMLResponse)
def vit_embeddings_page(request: Request, state: StateDep) -> HTMLResponse:
    return render(
        request,
        "vit_embeddings.html",
        "/vit-embeddings",
        "ViT embeddings",
        vision_model_choices(state.settings),
    )


@router.get("/distance", response_class=HTMLResponse)
def distance_page(request: Request, state: StateDep) -> HTMLResponse:
    data = {
        **vision_model_choices(state.settings),
        "max_upload_mb": state.settings.limits.max_upload_mb,
        "max_files": MAX_FILES,
        "max_images": MAX_IMAGES,
        "n_samples": len(sample_list()),
        "device": str(state.device),
    }
    return render(request, "distance.html", "/distance", "Mean attention distance", data)


@router.get("/offsets", response_class=HTMLResponse)
def offsets_page(request: Request, state: StateDep) -> HTMLResponse:
    data = text_model_choices(state.settings)
    return render(request, "offsets.html", "/offsets", "Do heads attend by relative position?", data)
