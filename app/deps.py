"""Annotated dependency aliases for routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Query, Request

from app.state import AppState


async def get_state(request: Request) -> AppState:
    """The app's state. A coroutine on purpose, as every dependency here: FastAPI runs a plain ``def``
    dependency in its thread pool, one thread hop per request, so ``/api/health`` would wait for a free
    pool thread and the GIL behind the pages' template rendering (tests/api/test_dependencies.py)."""
    return request.app.state.atlas


StateDep = Annotated[AppState, Depends(get_state)]

# The optional model id every model-backed route takes, declared once (default: the area's default model).
MODEL_DOC = "an id from /api/models"
ModelForm = Annotated[str | None, Form(description=MODEL_DOC)]
ModelQuery = Annotated[str | None, Query(description=MODEL_DOC)]
