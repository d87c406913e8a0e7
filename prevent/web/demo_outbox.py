"""GET /outbox: what the demo's embedded SMTP server and HTTP sink (SMS gateway, webhooks)
received, so `make run` shows every channel without any real gateway. Demo only. What it
shows are messages to contacts (addresses, numbers, live acknowledgement links): only the
roles that may read the partner registry see it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from prevent.partners import edits as partners
from prevent.users import Principal, require
from prevent.web import deps, render
from prevent.web.security import gate

router = APIRouter()
TEMPLATES = render.TEMPLATES  # one environment: the shared filters (times in the unit's zone)


@router.get("/outbox", response_class=HTMLResponse)
async def demo_outbox(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    require(principal, *partners.EDITORS, action="see the demo outbox (it holds contact details)")
    state = deps.state(request)
    mail = state.outbox() if getattr(state, "outbox", None) else None
    http = state.http_outbox() if getattr(state, "http_outbox", None) else None
    return render.TEMPLATES.TemplateResponse(request, "outbox.html", {"mail": mail, "http": http})
