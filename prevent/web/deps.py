"""What route modules need from the running console, without importing the app module."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from prevent.platform.config import Settings, get_settings
from prevent.platform.storage.db import Database


def state(request: Request) -> Any:
    return request.app.state.console


def settings(request: Request) -> Settings:
    return getattr(state(request), "settings", None) or get_settings()


def db(request: Request) -> Database:
    database: Database = state(request).db
    return database


def kick(request: Request) -> None:
    """Ask the process's outbox relay (if it has one) to publish what was just committed."""
    kick = getattr(state(request), "kick", None)
    if kick:
        kick()
