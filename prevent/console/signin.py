"""Sign-in, sign-out and password change for the console.

Passwords are checked by ``prevent.users.login`` (argon2, audited). A user with a TOTP
secret must also give the current code; an administrator without one cannot sign in to
the console until one is enrolled (``prevent users totp NAME``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pyotp
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from prevent import audit, users
from prevent.console import render, sessions
from prevent.console.security import SigninLimiter, gate
from prevent.storage.tables import UserRow
from prevent.users import AuthError, Principal, Role, UserError

router = APIRouter()
GENERIC_FAILURE = "Unknown user, wrong password or wrong one-time code."


def limiter(request: Request) -> SigninLimiter:
    return request.app.state.signin_limiter  # type: ignore[no-any-return]


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect would make the sign-in page a phishing tool."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _form(request: Request, next_: str, *, error: str | None = None, status: int = 200
          ) -> HTMLResponse:
    return render.page(request, "signin.html", {"next": safe_next(next_), "error": error},
                       status=status)


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002
    return _form(request, next)


def _second_factor_problem(row: UserRow | None, code: str) -> str | None:
    if row is None:
        return GENERIC_FAILURE
    if row.totp_secret:
        return None if pyotp.TOTP(row.totp_secret).verify(code.strip(), valid_window=1) \
            else GENERIC_FAILURE
    if row.role == Role.ADMIN.value:
        return ("Administrators need a second factor: enrol one with "
                "'prevent users totp NAME', then sign in with its code.")
    return None


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, name: str = Form(max_length=100),
                 password: str = Form(max_length=1000), code: str = Form(default="", max_length=10),
                 next: str = Form(default="/")) -> Response:  # noqa: A002
    name, address = name.strip().lower(), client_address(request)
    if limiter(request).blocked(name, address):
        return _form(request, next, status=429,
                     error="Too many failed sign-ins. Wait 15 minutes, or ask an administrator.")
    db = request.app.state.console.db
    async with db.transaction() as session:
        principal = await users.login(session, name, password)
        row = await session.get(UserRow, name) if principal else None
        problem = _second_factor_problem(row, code) if principal else GENERIC_FAILURE
        if principal and problem:
            await audit.record(session, actor=name, action="auth.second_factor_failed",
                               subject=f"user:{name}")
        session_id = await sessions.create(session, name) if not problem else None
    if session_id is None:
        limiter(request).failed(name, address)
        return _form(request, next, error=problem, status=401)
    limiter(request).succeeded(name)
    response = RedirectResponse(safe_next(next), status_code=303)
    sessions.set_cookie(response, request, session_id)
    return response


@router.post("/signout")
async def signout(request: Request, _p: Principal = Depends(gate)) -> Response:
    session_id = request.cookies.get(sessions.COOKIE)
    if session_id:
        async with request.app.state.console.db.transaction() as session:
            await sessions.revoke(session, session_id)
    response = RedirectResponse("/signin", status_code=303)
    sessions.clear_cookie(response, request)
    return response


@router.get("/account/password", response_class=HTMLResponse)
async def password_page(request: Request, _p: Principal = Depends(gate)) -> HTMLResponse:
    return render.page(request, "password.html", {"error": None})


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(request: Request, current: str = Form(max_length=1000),
                          new: str = Form(max_length=1000), repeat: str = Form(max_length=1000),
                          principal: Principal = Depends(gate)) -> Response:
    error = None
    if new != repeat:
        error = "The two new passwords differ."
    else:
        try:
            async with request.app.state.console.db.transaction() as session:
                await sessions.change_password(session, principal.name, current, new)
        except (AuthError, UserError) as exc:
            error = str(exc)
    if error:
        return render.page(request, "password.html", {"error": error}, status=422)
    response = RedirectResponse("/signin", status_code=303)  # every session ended, this one too
    sessions.clear_cookie(response, request)
    return response
