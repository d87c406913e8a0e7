"""Rendering console pages: one template environment, and the context every page needs
(who is signed in, the CSRF token for forms and htmx, the navigation)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup

from prevent import audit
from prevent.partners import edits as partners
from prevent.platform.config import get_settings
from prevent.platform.unittime import TIME_FORMAT, as_datetime
from prevent.platform.unittime import local_text as local_text  # re-exported: render.local_text
from prevent.platform.unittime import zone as zone  # re-exported: render.zone
from prevent.users import Principal, Role

log = logging.getLogger("prevent.web")

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _zone_of(context: Any) -> str:
    """The page's zone; pages rendered without ``page()`` (acknowledgement pages) ask the app."""
    if context.get("tz"):
        return str(context["tz"])
    request = context.get("request")
    return time_zone(request) if request is not None else get_settings().time_zone


@pass_context
def when(context: Any, value: datetime | str | None, fmt: str = TIME_FORMAT) -> Markup:
    """``<time>`` in the unit's zone, UTC on hover (``title``) and in ``datetime``."""
    moment = as_datetime(value)
    if moment is None:
        return Markup("")
    utc = moment.astimezone(UTC)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        local_text(moment, _zone_of(context), fmt))


@pass_context
def localtime(context: Any, value: datetime | str | None, fmt: str = TIME_FORMAT) -> str:
    """Plain text in the unit's zone (for sentences such as "acknowledged at ...")."""
    return local_text(value, _zone_of(context), fmt)


def install_filters(templates: Jinja2Templates) -> None:
    """The shared filters on another template environment (the acknowledgement pages')."""
    templates.env.filters["when"] = when
    templates.env.filters["localtime"] = localtime
    templates.env.globals["left_out"] = audit.left_out


install_filters(TEMPLATES)
NAV = (("/", "Alert queue"), ("/notices", "Notices"), ("/patrols", "Patrol board"),
       ("/playbooks", "Playbooks"), ("/diaspora", "Diaspora map"), ("/partners", "Partners"),
       ("/feeds", "Feeds"), ("/silences", "Silences"), ("/deadletters", "Dead letters"),
       ("/audit", "Audit log"))
ADMIN_NAV = (("/users", "Users"),)
PARTNER_ROLES = partners.EDITORS  # who may read the registry (it holds contact details)
DEADLETTER_ROLES = (Role.DUTY_INSPECTOR, Role.ADMIN)  # console/operations.py DEADLETTER_READERS


def time_zone(request: Request) -> str:
    state = getattr(request.app.state, "console", None)
    settings = getattr(state, "settings", None) or get_settings()
    return settings.time_zone


def nav_for(principal: Principal | None) -> tuple[tuple[str, str], ...]:
    """The links a role may follow: no Partners link for roles the registry refuses (403)."""
    if principal is None:
        return NAV
    links = tuple((href, label) for href, label in NAV
                  if (href != "/partners" or principal.role in PARTNER_ROLES)
                  and (href != "/deadletters" or principal.role in DEADLETTER_ROLES))
    return links + ADMIN_NAV if principal.role is Role.ADMIN else links


def page(request: Request, template: str, context: dict[str, Any], *, status: int = 200
         ) -> HTMLResponse:
    signed_in = getattr(request.state, "signed_in", None)
    principal: Principal | None = getattr(request.state, "principal", None)
    base = {"me": principal, "csrf_token": signed_in.csrf_token if signed_in else "",
            "nav": nav_for(principal), "path": request.url.path, "tz": time_zone(request)}
    return TEMPLATES.TemplateResponse(request, template, base | context, status_code=status,
                                      headers={"Cache-Control": "no-store"})


def message(request: Request, heading: str, text: str, *, status: int) -> HTMLResponse:
    """A plain page explaining an error (403, 404, 409, 422) to the person who acted."""
    return page(request, "message.html", {"heading": heading, "text": text}, status=status)
