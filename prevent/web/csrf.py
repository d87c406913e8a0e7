"""CSRF protection for cookie sessions: the synchronizer-token pattern.

Every session has a random token stored server-side (``console_sessions.csrf_token``).
Pages put it in each form (``csrf_token``) and in a ``<meta>`` that htmx and
``console.js`` send back as the ``X-CSRF-Token`` header. A state-changing request
authenticated by the session cookie must carry it; bearer-token calls are exempt
because a browser never attaches a bearer token on its own (no ambient credential).
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEADER = "x-csrf-token"
FIELD = "csrf_token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def submitted_token(request: Request) -> str:
    """The token the request carries: the header first (htmx, fetch), else the form field."""
    header = request.headers.get(HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(FORM_TYPES):
        # Starlette caches the parsed form on the request, so the route can still read it.
        return str((await request.form()).get(FIELD) or "")
    return ""


async def verify(request: Request, expected: str) -> None:
    """Raise 403 unless a state-changing request carries the session's token."""
    if request.method.upper() in SAFE_METHODS:
        return
    token = await submitted_token(request)
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "missing or invalid CSRF token: reload the page and try again")
