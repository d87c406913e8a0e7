"""Sign-in, sign-out and password change for the console.

``prevent.users.sign_in`` decides (argon2 password, then the TOTP code of a user who has one;
an administrator without one cannot sign in until one is enrolled with ``prevent users totp
NAME``; too many failures for the account, counted from the audit trail, block it for a while).
This module adds a limit per client address, kept in memory, and a pre-session CSRF token:
``GET /signin`` sets a random value in a ``SameSite=Strict`` cookie and puts its HMAC (keyed
with the secret key) in the form; a ``POST /signin`` without the pair is refused (403), so
another site cannot sign a browser in to an account of the attacker's choosing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from prevent import users
from prevent.partners.acklinks import secret_key
from prevent.users import AuthError, Principal, UserError
from prevent.web import deps, render, sessions
from prevent.web import security as security_module
from prevent.web.security import SigninLimiter, gate

router = APIRouter()
TOO_MANY_FROM_HERE = "Too many failed sign-ins from this address. Wait 15 minutes."
PRE_SESSION_COOKIE = "prevent_signin"
PRE_SESSION_FIELD = "signin_token"
PRE_SESSION_MAX_AGE = 3600
STALE_FORM = "The sign-in form has expired or did not come from this site. Please sign in again."


def limiter(request: Request) -> SigninLimiter:
    signin_limiter: SigninLimiter = request.app.state.signin_limiter
    return signin_limiter


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect would make the sign-in page a phishing tool."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def client_address(request: Request) -> str:
    """The peer, or what a trusted proxy says (``PREVENT_TRUSTED_PROXIES``)."""
    return security_module.client_address(request)


def _form_token(request: Request, value: str) -> str:
    key = secret_key(deps.settings(request))
    return hmac.new(key.encode(), f"signin:{value}".encode(), hashlib.sha256).hexdigest()


def _pre_session_ok(request: Request, submitted: str) -> bool:
    value = request.cookies.get(PRE_SESSION_COOKIE, "")
    return bool(value and submitted) and hmac.compare_digest(_form_token(request, value), submitted)


def _form(request: Request, next_: str, *, error: str | None = None, status: int = 200
          ) -> HTMLResponse:
    """The form with a fresh pre-session token (a new cookie each time it is shown)."""
    value = secrets.token_urlsafe(32)
    response = render.page(request, "signin.html", {
        "next": safe_next(next_), "error": error, "signin_token": _form_token(request, value)},
        status=status)
    response.set_cookie(PRE_SESSION_COOKIE, value, max_age=PRE_SESSION_MAX_AGE, path="/signin",
                        httponly=True, samesite="strict", secure=sessions.secure_cookies(request))
    return response


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, next: str = "/") -> HTMLResponse:
    return _form(request, next)


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, name: str = Form(max_length=100),
                 password: str = Form(max_length=1000), code: str = Form(default="", max_length=10),
                 next: str = Form(default="/"),
                 signin_token: str = Form(default="", max_length=200)) -> Response:
    if not _pre_session_ok(request, signin_token):
        return _form(request, next, status=403, error=STALE_FORM)
    address = client_address(request)
    if await limiter(request).blocked(address):
        return _form(request, next, status=429, error=TOO_MANY_FROM_HERE)
    key = secret_key(deps.settings(request))
    async with users.sign_in_lock(name), deps.db(request).transaction() as session:
        outcome = await users.sign_in(session, name, password, code, key=key)
        session_id = (await sessions.create(session, outcome.name)
                      if isinstance(outcome, Principal) else "")
    if isinstance(outcome, users.Refusal):
        if not outcome.blocked:
            await limiter(request).failed(address)
        return _form(request, next, error=outcome.message, status=429 if outcome.blocked else 401)
    response = RedirectResponse(safe_next(next), status_code=303)
    sessions.set_cookie(response, request, session_id)
    response.delete_cookie(PRE_SESSION_COOKIE, path="/signin")
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
