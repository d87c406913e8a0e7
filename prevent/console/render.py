"""Rendering console pages: one template environment, and the context every page needs
(who is signed in, the CSRF token for forms and htmx, the navigation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from prevent.users import Principal, Role

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
NAV = (("/", "Alert queue"), ("/notices", "Notices"), ("/patrols", "Patrol board"),
       ("/playbooks", "Playbooks"), ("/partners", "Partners"), ("/feeds", "Feeds"),
       ("/audit", "Audit log"))
ADMIN_NAV = (("/users", "Users"),)


def page(request: Request, template: str, context: dict[str, Any], *, status: int = 200
         ) -> HTMLResponse:
    signed_in = getattr(request.state, "signed_in", None)
    principal: Principal | None = getattr(request.state, "principal", None)
    base = {"me": principal, "csrf_token": signed_in.csrf_token if signed_in else "",
            "nav": NAV + ADMIN_NAV if principal and principal.role is Role.ADMIN else NAV,
            "path": request.url.path}
    return TEMPLATES.TemplateResponse(request, template, base | context, status_code=status,
                                      headers={"Cache-Control": "no-store"})


def message(request: Request, heading: str, text: str, *, status: int) -> HTMLResponse:
    """A plain page explaining an error (403, 404, 409, 422) to the person who acted."""
    return page(request, "message.html", {"heading": heading, "text": text}, status=status)
