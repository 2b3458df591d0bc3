"""Annotated dependency aliases for routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.settings import Settings
from app.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.atlas


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
