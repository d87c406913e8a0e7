"""The console web app. Pages are server-rendered; core views work without JavaScript."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from prevent.alerts import states as alert_service
from prevent.partners import edits as partners
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import FeedState, IncidentRow, NoticeRow, PatrolRow
from prevent.users import PermissionDenied, Principal, require
from prevent.web import (
    accounts,
    ack,
    api,
    boards,
    live,
    notices,
    pages,
    patrols,
    render,
    security,
    signin,
    zones_roster,
)
from prevent.web import demo_outbox as outbox
from prevent.web import diaspora_editor as diaspora_routes
from prevent.web import metrics as metrics_routes
from prevent.web import operations as operations_routes
from prevent.web import partner_editor as partner_routes
from prevent.web import playbook_editor as playbook_routes
from prevent.web import sms_replies as sms
from prevent.web import websub_callbacks as websub_routes

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@dataclass
class ConsoleState:
    db: Database
    outbox: Callable[[], list[Any]] | None = None  # demo SMTP sink's received mail
    kick: Callable[[], None] | None = None  # the process's outbox relay: publish decisions now
    settings: Settings | None = None  # None: the process's settings (get_settings)
    http_outbox: Callable[[], list[Any]] | None = None  # demo HTTP sink's SMS and webhook requests
    checks: dict[str, Callable[[], Any]] = field(default_factory=dict)
    websub: Callable[[str, bytes, Any], Any] | None = None  # the in-process watcher's push receiver
    lag: Callable[[], Any] | None = None  # /metrics consumer lag text (console/kafkalag.py)
    bootstrap: str | None = None  # the process's Kafka (embedded or configured): /deadletters reads it


async def _not_allowed(request: Request, exc: PermissionDenied) -> Response:
    """Signed in, but the role does not allow the action: one answer for every route (an
    explaining page in the console, JSON on the API), so routes need not catch it."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": str(exc)}, status_code=403)
    return render.message(request, "Not allowed", str(exc), status=403)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """422 naming each field and what is wrong with it, without echoing the input back (it may
    be a password, or a value JSON cannot carry, such as NaN, which made the answer a 500)."""
    detail = [{"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", "")),
               "type": str(err.get("type", ""))} for err in exc.errors()]
    if request.url.path.startswith("/api/") or request.method != "GET":
        return JSONResponse({"detail": detail}, status_code=422)
    text = "; ".join(f"{'.'.join(d['loc'][1:]) or 'request'}: {d['msg']}" for d in detail)
    return render.message(request, "Not understood", text, status=422)


async def _unreadable(request: Request, exc: Exception) -> Response:
    """Input the parsers cannot take (nested too deep, not UTF-8, numbers out of range): the
    person who sent it gets 400 and why, not a server error."""
    reasons = {RecursionError: "the input is nested too deeply",
               UnicodeDecodeError: "the input is not UTF-8 text",
               OverflowError: "a number in the request is out of range"}
    text = next((why for kind, why in reasons.items() if isinstance(exc, kind)), "unreadable input")
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": text}, status_code=400)
    return render.message(request, "Not understood", text, status=400)


def create_app(state_factory: Callable[[FastAPI], AbstractAsyncContextManager[ConsoleState]]
               ) -> FastAPI:
    """``state_factory`` opens what the console needs (and, in `prevent up`, the whole system)
    for the lifetime of the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with state_factory(app) as state:
            app.state.console = state
            yield

    # Every route needs a session or a bearer token unless security.PUBLIC_PATHS lists it;
    # the interactive docs are off (they would be unauthenticated Starlette routes).
    app = FastAPI(title="prevent console", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  dependencies=[Depends(security.close_form), Depends(security.gate)])
    app.add_middleware(security.BodyLimit)
    app.add_middleware(security.SecurityHeaders)  # outermost: on every answer, 413s included
    # ignored: starlette types a handler as taking any Exception; it passes only the class registered
    app.add_exception_handler(PermissionDenied, _not_allowed)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    for unreadable in (RecursionError, UnicodeDecodeError, OverflowError):
        app.add_exception_handler(unreadable, _unreadable)
    app.state.signin_limiter = security.SigninLimiter()
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static")
    app.include_router(signin.router)
    app.include_router(live.router)  # before pages: /alerts/stream is not an alert id
    app.include_router(pages.router)
    app.include_router(boards.router)
    app.include_router(playbook_routes.router)
    app.include_router(diaspora_routes.router)
    app.include_router(partner_routes.router)
    app.include_router(zones_roster.router)
    app.include_router(accounts.router)
    app.include_router(api.router)
    app.include_router(ack.router)
    app.include_router(sms.router)
    app.include_router(notices.router)
    app.include_router(patrols.router)
    app.include_router(outbox.router)
    app.include_router(websub_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(operations_routes.router)  # /silences, /deadletters (issue 22)

    def console(request: Request) -> ConsoleState:
        state: ConsoleState = request.app.state.console
        return state

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        state = console(request)
        checks = {"database": await state.db.ping()}
        for name, check in state.checks.items():
            checks[name] = bool(await check())
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/overview", response_class=HTMLResponse)
    async def overview(request: Request, principal: Principal = Depends(security.gate)
                       ) -> HTMLResponse:
        # Notices here hold contact addresses and live acknowledgement links.
        require(principal, *partners.EDITORS, action="see the raw demo state (it holds contact details)")
        state = console(request)
        async with state.db.transaction() as session:
            recent_alerts = await alert_service.list_alerts(session, limit=50)
            incidents = (await session.execute(
                select(IncidentRow).order_by(IncidentRow.received_at.desc()).limit(20))).scalars().all()
            notices = (await session.execute(
                select(NoticeRow).order_by(NoticeRow.created_at.desc()).limit(50))).scalars().all()
            patrols = (await session.execute(
                select(PatrolRow).order_by(PatrolRow.created_at.desc()).limit(50))).scalars().all()
            feeds = (await session.execute(select(FeedState).order_by(FeedState.feed_id))).scalars().all()
            incident_count = (await session.execute(select(func.count()).select_from(IncidentRow))).scalar()
        outbox = state.outbox() if state.outbox else None
        return render.TEMPLATES.TemplateResponse(request, "overview.html", {
            "alerts": recent_alerts, "incidents": incidents, "incident_count": incident_count,
            "notices": notices, "patrols": patrols, "feeds": feeds, "outbox": outbox,
        })

    return app
