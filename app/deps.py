"""Annotated dependency aliases for routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.atlas


StateDep = Annotated[AppState, Depends(get_state)]
