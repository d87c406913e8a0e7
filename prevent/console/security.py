"""What every console response and route gets: security headers, the sign-in gate and
sign-in rate limiting.

* Headers: a Content-Security-Policy without inline scripts (``script-src 'self'``; htmx and
  ``console.js`` are served from the package), ``frame-ancestors 'none'``, nosniff. A route
  that sets its own header keeps it (the acknowledgement pages send ``no-referrer``).
* Gate: every route needs a principal (session or bearer token) except ``PUBLIC_PATHS`` —
  probes, the public callbacks that verify their own signatures, and sign-in itself.
  Roles are then checked by the domain services.
* Rate limiting: failed sign-ins per account and per client address, **in memory** (per
  process; a restart forgets them — acceptable, as argon2 already makes guessing slow).
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict, deque
from urllib.parse import quote

from fastapi import HTTPException, Request, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prevent.auth import current_principal
from prevent.config import get_settings
from prevent.users import Principal

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
       "frame-ancestors 'none'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
# Route paths (as declared) reachable without signing in.
PUBLIC_PATHS = frozenset({
    "/healthz", "/readyz", "/signin", "/api/login",  # the two ways to sign in
    "/ack/{token}", "/ack/{token}/preferences", "/ack/{token}/report",  # the token is the capability
    "/websub/{callback_id}",  # challenge echo / HMAC-signed pushes
    "/sms/inbound", "/sms/status",  # gateway signature checked by the route
})
METRICS_PATH = "/metrics"


class SecurityHeaders:
    """Pure ASGI middleware (not BaseHTTPMiddleware, which would buffer the SSE stream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()
                         if k.encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_public(path: str, request: Request) -> bool:
    if path in PUBLIC_PATHS:
        return True
    if path == METRICS_PATH:
        settings = getattr(request.app.state.console, "settings", None) or get_settings()
        return settings.metrics_public
    return False


def wants_html(request: Request) -> bool:
    return (request.method == "GET" and not request.url.path.startswith("/api/")
            and "text/html" in request.headers.get("accept", ""))


async def _resolve(request: Request) -> Principal:
    """``current_principal``, honouring a test's ``app.dependency_overrides`` for it (the gate
    calls it directly, as only non-public routes need it)."""
    override = request.app.dependency_overrides.get(current_principal)
    if override is None:
        return await current_principal(request)
    result = override()
    return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]


async def gate(request: Request) -> Principal | None:
    """App-wide dependency: a principal for every non-public route. A browser asking for a
    page is sent to sign-in (and back afterwards); anything else gets 401."""
    route = request.scope.get("route")
    if is_public(getattr(route, "path", request.url.path), request):
        return None
    try:
        principal = await _resolve(request)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_html(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(status.HTTP_303_SEE_OTHER,
                                headers={"Location": f"/signin?next={quote(target, safe='')}"}
                                ) from exc
        raise
    request.state.principal = principal
    return principal


class SigninLimiter:
    """Failed sign-ins per client address in a sliding window, in this process's memory (the
    limit per account is shared by every replica: ``prevent.users.sign_in``). Addresses are
    never stored."""

    def __init__(self, *, per_address: int = 20, window_seconds: float = 900.0) -> None:
        self.limit = per_address
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures[address]
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def blocked(self, address: str) -> bool:
        return len(self._recent(address, time.monotonic())) >= self.limit

    def failed(self, address: str) -> None:
        now = time.monotonic()
        self._recent(address, now).append(now)
