"""What every console response and route gets: security headers, the sign-in gate and
sign-in rate limiting.

* Headers: a Content-Security-Policy without inline scripts (``script-src 'self'``; htmx and
  ``console.js`` are served from the package), ``frame-ancestors 'none'``, nosniff. A route
  that sets its own header keeps it (the acknowledgement pages send ``no-referrer``).
* Gate: every route needs a principal (session or bearer token) except ``PUBLIC_PATHS`` —
  probes, the public callbacks that verify their own signatures, and sign-in itself.
  Roles are then checked by the domain services.
* Rate limiting: failed sign-ins per account (counted from the audit trail, so shared by
  every replica: ``prevent.users.sign_in``) and per client address, the latter **in memory**
  (``SigninLimiter``: per process; a restart forgets them — acceptable, as argon2 already
  makes guessing slow).
  The client address is the connection's peer; ``X-Forwarded-For`` and ``X-Forwarded-Proto``
  are believed only from ``PREVENT_TRUSTED_PROXIES`` (``client_address``, ``is_https``).
* JSON responses are ``Cache-Control: no-store`` (they carry alerts, contacts, tokens); over
  HTTPS every response carries ``Strict-Transport-Security``.
* Request bodies are limited per route (``BodyLimit``): a sign-in is a few hundred bytes, so a
  50 MiB body is refused with 413 before it is read, not parsed.
"""

from __future__ import annotations

import inspect
import ipaddress
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, status
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prevent.platform.config import Settings, get_settings
from prevent.users import Principal
from prevent.web.auth import current_principal

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
HSTS = "max-age=31536000; includeSubDomains"
NO_STORE = "no-store"


def scope_settings(scope: Scope) -> Settings:
    app = scope.get("app")
    state = getattr(getattr(app, "state", None), "console", None)
    return getattr(state, "settings", None) or get_settings()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(text: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in text.split(",") if part.strip())


def _trusted(address: str | None, settings: Settings) -> bool:
    if not address or not settings.trusted_proxies:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(settings.trusted_proxies))


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def scope_client_address(scope: Scope, settings: Settings) -> str:
    """The client's address: the connection's peer, unless the peer is a trusted proxy; then
    the nearest address in ``X-Forwarded-For`` that is not one of our proxies (what a client
    writes further left is its own claim)."""
    peer = _peer(scope) or "unknown"
    if not _trusted(peer, settings):
        return peer
    forwarded = Headers(scope=scope).getlist("x-forwarded-for")
    hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, settings):
            return hop
    return hops[0] if hops else peer


def scope_is_https(scope: Scope, settings: Settings) -> bool:
    if scope.get("scheme") == "https":
        return True
    if _trusted(_peer(scope), settings):
        proto = Headers(scope=scope).get("x-forwarded-proto", "")
        return proto.split(",")[-1].strip().lower() == "https"
    return False


def client_address(request: Request) -> str:
    return scope_client_address(request.scope, scope_settings(request.scope))


def is_https(request: Request) -> bool:
    return scope_is_https(request.scope, scope_settings(request.scope))


class SecurityHeaders:
    """Pure ASGI middleware (not BaseHTTPMiddleware, which would buffer the SSE stream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope_is_https(scope, scope_settings(scope))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower(): v for k, v in headers}
                wanted = dict(HEADERS)
                if present.get(b"content-type", b"").startswith(b"application/json"):
                    wanted["cache-control"] = NO_STORE
                if https:
                    wanted["strict-transport-security"] = HSTS
                headers += [(k.encode(), v.encode()) for k, v in wanted.items()
                            if k.encode() not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Body limits by path prefix (longest first); other routes: PREVENT_MAX_REQUEST_BYTES.
SMALL_BODY = 16 * 1024
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/api/login", SMALL_BODY), ("/signin", SMALL_BODY), ("/signout", SMALL_BODY),
    ("/account/", SMALL_BODY), ("/sms/", 64 * 1024),
    ("/partners/import", 3 * 1024 * 1024),  # the file (2 MB) plus the multipart envelope
    ("/websub/", 10 * 1024 * 1024 + 1),  # the route refuses more than its own limit (413)
)


def body_limit(path: str, settings: Settings) -> int:
    for prefix, limit in BODY_LIMITS:
        if path == prefix or path.startswith(prefix):
            return limit
    return settings.max_request_bytes


class BodyLimit:
    """413 for a body over its route's limit: at once when ``Content-Length`` says so, else
    as soon as the streamed body passes it (nothing more is read)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope.get("path", ""), scope_settings(scope))
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(scope, receive, send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                        f"request body over {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    from starlette.responses import JSONResponse, PlainTextResponse

    text = f"request body over {limit} bytes"
    response: Any = (JSONResponse({"detail": text}, status_code=413)
                     if scope.get("path", "").startswith("/api/")
                     else PlainTextResponse(text, status_code=413))
    await response(scope, receive, send)


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
    principal: Principal = await result if inspect.isawaitable(result) else result
    return principal


async def close_form(request: Request) -> AsyncIterator[None]:
    """App-wide dependency: once the answer is sent, close the form Starlette parsed for the
    request (by ``refuse_nul``, the CSRF check or the route; it is parsed once and cached on
    the request), uploads' temporary files included. Starlette closes it only for ``async with
    request.form()``; left to the garbage collector, each upload was a ResourceWarning."""
    try:
        yield
    finally:
        await request.close()


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
    await refuse_nul(request)
    return principal


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def refuse_nul(request: Request) -> None:
    """422 for a NUL character (U+0000) in the path, the query or a form field: no field needs
    one, and PostgreSQL cannot store or compare it in text (a note, a silence's comment or a
    path holding one was a server error). JSON bodies: ``prevent.web.api.refuse_nul``; uploaded
    files: their parsers. After the principal: nobody learns anything from it."""
    found = [f"query.{k}" for k, v in request.query_params.multi_items() if "\x00" in k + v]
    if "\x00" in request.url.path:
        found.append("path")
    if request.method not in ("GET", "HEAD") and \
            request.headers.get("content-type", "").startswith(FORM_TYPES):
        form = await request.form()  # parsed once: the route (and the CSRF check) reuse it
        found += [f"form.{k}" for k, v in form.multi_items()
                  if isinstance(v, str) and "\x00" in k + v]
    if found:
        raise HTTPException(422, "text may not contain a NUL character (U+0000): "
                            + ", ".join(found[:5]))


class SigninLimiter:
    """Failed sign-ins per client address in a sliding window (``limits``' moving window), in
    this process's memory; the limit per account is shared by every replica
    (``prevent.users.sign_in``).

    Memory stays bounded: an address is held only while it has a failure in the window (at
    most ``per_address`` timestamps; the storage's expiry pass, run after each recorded
    failure, drops addresses whose failures have all left it), and a check never adds one.
    Every failure costs an argon2 verification, which bounds how many addresses can fail
    within one window. Nothing is written anywhere else.
    """

    def __init__(self, *, per_address: int = 20, window_seconds: int = 900) -> None:
        self.limit = per_address
        self.window = window_seconds
        self._item = RateLimitItemPerSecond(per_address, window_seconds)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def blocked(self, address: str) -> bool:
        """``per_address`` failures or more from ``address`` within the window."""
        return not await self._limiter.test(self._item, address)

    async def failed(self, address: str) -> None:
        # Refused (not recorded) once the address is at its limit, as it is blocked anyway.
        await self._limiter.hit(self._item, address)
