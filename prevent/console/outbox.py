"""GET /outbox: what the demo's embedded SMTP server and HTTP sink (SMS gateway, webhooks)
received, so `make run` shows every channel without any real gateway. Demo only."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from prevent.console import deps

router = APIRouter()
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@router.get("/outbox", response_class=HTMLResponse)
async def demo_outbox(request: Request) -> HTMLResponse:
    state = deps.state(request)
    mail = state.outbox() if getattr(state, "outbox", None) else None
    http = state.http_outbox() if getattr(state, "http_outbox", None) else None
    return TEMPLATES.TemplateResponse(request, "outbox.html", {"mail": mail, "http": http})
