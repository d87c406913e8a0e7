"""Resolving the acting :class:`Principal` for an HTTP request.

``current_principal`` tries each registered source in order and takes the first
that recognises the request: a bearer token, then the console's cookie session
(``prevent.web.sessions``, which checks the CSRF token on state-changing requests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from fastapi import HTTPException, Request, status

from prevent import users
from prevent.platform.config import get_settings
from prevent.platform.storage.db import Database
from prevent.users import AuthError, Principal
from prevent.web.sessions import session_principal

# A source returns None when the request carries nothing it understands (try the next),
# a Principal when it authenticates, and raises AuthError when credentials are bad.
PrincipalSource = Callable[[Request], Awaitable[Principal | None]]


def _console_db(request: Request) -> Database:
    db: Database = request.app.state.console.db
    return db


async def bearer_principal(request: Request) -> Principal | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    settings = getattr(request.app.state.console, "settings", None) or get_settings()
    async with _console_db(request).transaction() as session:
        return await users.principal_for_token(
            session, token.strip(), max_age=timedelta(days=settings.api_token_max_age_days))


# Bearer first: an API call carrying a token is judged by it alone (no CSRF: not ambient).
# Then the console's cookie session, which checks the CSRF token on state-changing requests.
PRINCIPAL_SOURCES: list[PrincipalSource] = [bearer_principal, session_principal]


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the authenticated principal, or 401."""
    for source in PRINCIPAL_SOURCES:
        try:
            principal = await source(request)
        except AuthError as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                                headers={"WWW-Authenticate": "Bearer"}) from exc
        if principal is not None:
            return principal
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required",
                        headers={"WWW-Authenticate": "Bearer"})
