"""Server-side console sessions: an opaque random id in an HttpOnly cookie, state in the
``console_sessions`` table (not Starlette's signed client-side cookie, so a session can be
revoked: at sign-out, on a password change, or by an administrator disabling the user).

A session ends after ``IDLE_TIMEOUT`` without a request or ``ABSOLUTE_TIMEOUT`` after
sign-in, whichever comes first. Only the SHA-256 of the id is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.contracts import utcnow
from prevent.platform.storage.tables import ConsoleSessionRow, UserRow
from prevent.users import (
    MIN_PASSWORD,
    AuthError,
    Principal,
    Role,
    UserError,
    end_access,
    hash_password,
    seal_totp,
    verify_password,
)
from prevent.web import csrf

COOKIE = "prevent_session"
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=60)  # write last_seen_at at most once a minute per session


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    csrf_token: str
    session_sha256: str


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def create(session: AsyncSession, user_name: str, *, now: datetime | None = None) -> str:
    """A new session for ``user_name``; returns the raw id for the cookie (never stored)."""
    now = now or utcnow()
    session_id = secrets.token_urlsafe(32)
    session.add(ConsoleSessionRow(session_sha256=digest(session_id), user_name=user_name,
                                  csrf_token=secrets.token_urlsafe(32), created_at=now,
                                  last_seen_at=now, revoked_at=None))
    return session_id


def expired(row: ConsoleSessionRow, now: datetime) -> bool:
    return now - row.last_seen_at > IDLE_TIMEOUT or now - row.created_at > ABSOLUTE_TIMEOUT


async def resolve(session: AsyncSession, session_id: str, *, now: datetime | None = None
                  ) -> SignedIn | None:
    """The live session behind a cookie value, touched; None if unknown, revoked or timed out."""
    now = now or utcnow()
    row = await session.get(ConsoleSessionRow, digest(session_id))
    if row is None or row.revoked_at is not None:
        return None
    if expired(row, now):
        row.revoked_at = now
        return None
    user = await session.get(UserRow, row.user_name)
    if user is None or user.disabled:
        return None
    if now - row.last_seen_at > TOUCH_EVERY:
        row.last_seen_at = now
    return SignedIn(Principal(user.name, Role(user.role)), row.csrf_token, row.session_sha256)


async def revoke(session: AsyncSession, session_id: str) -> None:
    row = await session.get(ConsoleSessionRow, digest(session_id))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


async def change_password(session: AsyncSession, name: str, current: str, new: str) -> None:
    """Verify the current password, store the new hash, end every session of the user and
    revoke their API tokens (a stolen session or token must not survive the password change
    meant to lock its thief out). argon2 runs in a thread."""
    row = await session.get(UserRow, name)
    if row is None or row.disabled:
        raise AuthError("no active user")
    if not await verify_password(row.password_hash, current):
        raise AuthError("the current password is wrong")
    if len(new) < MIN_PASSWORD:
        raise UserError(f"the new password needs at least {MIN_PASSWORD} characters")
    row.password_hash = await hash_password(new)
    await end_access(session, name)
    await audit.record(session, actor=name, action="user.password_changed", subject=f"user:{name}")


def secure_cookies(request: Request) -> bool:
    """Secure when served over HTTPS (directly, or behind a trusted proxy that says so:
    ``PREVENT_TRUSTED_PROXIES``)."""
    from prevent.web.security import is_https  # security imports this module

    return is_https(request)


def set_cookie(response: Response, request: Request, session_id: str) -> None:
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="lax",
                        secure=secure_cookies(request), path="/",
                        max_age=int(ABSOLUTE_TIMEOUT.total_seconds()))


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                           secure=secure_cookies(request))


async def signed_in(request: Request) -> SignedIn | None:
    """The request's session (resolved once per request), without the CSRF check."""
    if hasattr(request.state, "signed_in"):
        resolved: SignedIn | None = request.state.signed_in
        return resolved
    session_id = request.cookies.get(COOKIE)
    found = None
    if session_id:
        async with request.app.state.console.db.transaction() as session:
            found = await resolve(session, session_id)
    request.state.signed_in = found
    return found


async def session_principal(request: Request) -> Principal | None:
    """A ``prevent.web.auth`` principal source: the session cookie, CSRF-checked on writes."""
    found = await signed_in(request)
    if found is None:
        return None
    await csrf.verify(request, found.csrf_token)
    return found.principal


async def enroll_totp(session: AsyncSession, name: str, *, actor: str, key: str,
                      issuer: str = "prevent") -> str:
    """Give ``name`` a new TOTP secret (replacing any old one), stored sealed with ``key`` (the
    secret key), and end their sessions and tokens; returns the otpauth:// URI for an
    authenticator app (shown once, never logged)."""
    import pyotp

    row = await session.get(UserRow, name)
    if row is None or row.disabled:
        raise UserError(f"no active user {name}")
    secret = pyotp.random_base32()
    row.totp_secret = seal_totp(key, secret)
    row.totp_last_step = None
    await end_access(session, name)
    await audit.record(session, actor=actor, action="user.totp_enrolled", subject=f"user:{name}")
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=issuer)
