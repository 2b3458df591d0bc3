"""/influence: measurements that look past the attention weights (issue 15), on one page.

The page route lists the models and the page's sections; each section is a Jinja partial
``templates/influence/_<name>.html`` and an ES module ``static/js/influence/<name>.js`` exporting
``mount(root, ctx)`` (contract: docs/influence.md). A helper adds its own section by appending its name to
:data:`SECTIONS`. The API routes (``/api/influence/...``) call :mod:`app.services.influence`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.deps import StateDep
from app.routers.pages import render
from app.services.catalog import text_model_choices, vision_model_choices

router = APIRouter(include_in_schema=False)

# Page sections, in order: templates/influence/_<name>.html + static/js/influence/<name>.js
SECTIONS: list[str] = ["contributions", "relevance", "curves"]


@router.get("/influence", response_class=HTMLResponse)
def influence_page(request: Request, state: StateDep) -> HTMLResponse:
    s = state.settings
    data = {
        "text": {
            **text_model_choices(s, "max_tokens"),
            "default_seq2seq_model": s.models.default_seq2seq_model,
        },
        "vision": vision_model_choices(s),
        "max_text_chars": s.limits.max_text_chars,
        "sections": SECTIONS,
    }
    return render(request, "influence.html", "/influence", "Attention is not influence", data)
