"""Local users, roles and API tokens: who may do what.

Passwords are stored only as argon2 hashes; API tokens only as their SHA-256 (a token
is random and long, so a fast hash suffices and lookups stay O(1)). Role checks live
here, in the domain, so the web layer cannot forget them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.contracts import utcnow
from prevent.storage.tables import ApiToken, AuditRow, ConsoleSessionRow, UserRow

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,99}$")
MIN_PASSWORD = 12
_hasher = PasswordHasher()


class Role(StrEnum):
    VIEWER = "viewer"
    DUTY_INSPECTOR = "duty_inspector"
    ENGAGEMENT_OFFICER = "engagement_officer"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is acting: resolved from a bearer token now, from a session cookie later."""

    name: str
    role: Role


SYSTEM = Principal("system", Role.ADMIN)


class AuthError(Exception):
    """Not authenticated (unknown user, bad password or token)."""


class PermissionDenied(Exception):
    """Authenticated, but the role does not allow the action."""


class UserError(ValueError):
    """Invalid input for user management; the message names the field."""


def require(principal: Principal, *roles: Role, action: str) -> None:
    """Raise unless the principal has one of ``roles`` (admin is not implied: least privilege)."""
    if principal.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise PermissionDenied(f"{principal.name} ({principal.role.value}) may not {action}; "
                               f"needs {allowed}")


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise UserError(f"role '{text}' is not one of {', '.join(r.value for r in Role)}") from None


async def add_user(session: AsyncSession, name: str, role: Role, password: str, *,
                   actor: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UserError(f"user name '{name}': use 2-100 lower-case letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password for {name}: at least {MIN_PASSWORD} characters")
    if await session.get(UserRow, name) is not None:
        raise UserError(f"user {name} already exists")
    session.add(UserRow(name=name, role=role.value, password_hash=_hasher.hash(password),
                        created_at=utcnow(), disabled=False))
    await audit.record(session, actor=actor, action="user.add", subject=f"user:{name}",
                       after={"role": role.value})


async def create_user(session: AsyncSession, principal: Principal, name: str, role: Role,
                      password: str) -> None:
    """Administrators manage users (the CLI, run on the server, calls ``add_user`` directly)."""
    require(principal, Role.ADMIN, action="manage users")
    await add_user(session, name, role, password, actor=principal.name)


async def login(session: AsyncSession, name: str, password: str) -> Principal | None:
    """Verify a password; None when wrong. Every attempt, good or bad, is audited (without the
    password) in the caller's transaction: it returns instead of raising so the caller commits
    the failed attempt's entry too."""
    row = await session.get(UserRow, name)
    ok = False
    if row is not None and not row.disabled:
        try:
            ok = _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            ok = False
    await audit.record(session, actor=name, action="auth.login" if ok else "auth.login_failed",
                       subject=f"user:{name}")
    return Principal(row.name, Role(row.role)) if ok and row is not None else None


GENERIC_FAILURE = "Unknown user, wrong password or wrong one-time code."
FAILED_SIGN_INS = ("auth.login_failed", "auth.second_factor_failed")
SIGN_IN_WINDOW = timedelta(minutes=15)
MAX_FAILED_SIGN_INS = 5  # per account in the window


@dataclass(frozen=True)
class Refusal:
    """Why a sign-in did not succeed, in words for the person; ``blocked``: too many failures."""

    message: str
    blocked: bool = False


async def failed_sign_ins(session: AsyncSession, name: str) -> int:
    """Failed sign-ins of ``name`` in the last ``SIGN_IN_WINDOW``, read from the audit trail: every
    console and API replica, and both ways in, share the count."""
    return (await session.execute(select(func.count()).select_from(AuditRow).where(
        AuditRow.subject == f"user:{name}", AuditRow.action.in_(FAILED_SIGN_INS),
        AuditRow.at >= utcnow() - SIGN_IN_WINDOW))).scalar_one()


async def sign_in(session: AsyncSession, name: str, password: str, code: str = "") -> Principal | Refusal:
    """The password, then the second factor: a user with one enrolled gives its current code,
    and an administrator without one cannot sign in. The console and ``POST /api/login`` both
    come here, so neither door is weaker than the other. Every attempt is audited in the
    caller's transaction (refusals are returned, not raised, so the caller commits them).
    Names are matched as lower case, as they are stored."""
    name = name.strip().lower()
    if await failed_sign_ins(session, name) >= MAX_FAILED_SIGN_INS:
        await audit.record(session, actor=name, action="auth.sign_in_blocked", subject=f"user:{name}")
        return Refusal("Too many failed sign-ins. Wait 15 minutes, or ask an administrator.",
                       blocked=True)
    principal = await login(session, name, password)
    if principal is None:
        return Refusal(GENERIC_FAILURE)
    row = await session.get(UserRow, name)
    problem = _check_second_factor(row, code)
    if problem:
        await audit.record(session, actor=name, action="auth.second_factor_failed",
                           subject=f"user:{name}")
        return Refusal(problem)
    return principal


def _check_second_factor(row: UserRow | None, code: str) -> str | None:
    """What is wrong with the second factor, or None (a code then counts as used)."""
    if row is None:
        return GENERIC_FAILURE
    if row.totp_secret:
        step = _totp_step(row.totp_secret, code)
        # A code is good once: seen over a shoulder or phished, it cannot be used again.
        if step is None or (row.totp_last_step is not None and step <= row.totp_last_step):
            return GENERIC_FAILURE
        row.totp_last_step = step
        return None
    if row.role == Role.ADMIN.value:
        return ("Administrators need a second factor: enrol one with "
                "'prevent users totp NAME', then sign in with its code.")
    return None


def _totp_step(secret: str, code: str) -> int | None:
    """The time step whose code ``code`` is: now, or one step either side (clock drift)."""
    totp = pyotp.TOTP(secret)
    now = totp.timecode(utcnow())
    return next((step for step in (now - 1, now, now + 1)
                 if hmac.compare_digest(totp.generate_otp(step), code.strip())), None)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(session: AsyncSession, name: str, *, actor: str) -> str:
    """A new bearer token for ``name``; returned once, only its digest is stored."""
    row = await session.get(UserRow, name)
    if row is None or row.disabled:
        raise UserError(f"no active user {name}")
    token = f"pvt_{secrets.token_urlsafe(32)}"
    digest = token_digest(token)
    session.add(ApiToken(token_sha256=digest, user_name=name, created_at=utcnow()))
    await audit.record(session, actor=actor, action="user.token_issued", subject=f"user:{name}",
                       after={"token_sha256_prefix": digest[:8]})
    return token


async def principal_for_token(session: AsyncSession, token: str) -> Principal:
    row = (await session.execute(
        select(UserRow).join(ApiToken, ApiToken.user_name == UserRow.name)
        .where(ApiToken.token_sha256 == token_digest(token), ApiToken.revoked_at.is_(None),
               UserRow.disabled.is_(False)))).scalar_one_or_none()
    if row is None:
        raise AuthError("invalid or revoked token")
    return Principal(row.name, Role(row.role))


async def list_users(session: AsyncSession, principal: Principal) -> list[dict[str, object]]:
    require(principal, Role.ADMIN, action="list users")
    rows = (await session.execute(select(UserRow).order_by(UserRow.name))).scalars()
    return [{"name": r.name, "role": r.role, "disabled": r.disabled,
             "second_factor": r.totp_secret is not None} for r in rows]


async def change_user(session: AsyncSession, principal: Principal, name: str, *,
                      role: Role | None = None, active: bool | None = None) -> bool:
    """An administrator changes another user's role, or disables or re-enables them; False if
    nothing changed. A role change applies at the user's next request. Disabling ends the
    user's console sessions and revokes their API tokens at once: re-enabling brings neither
    back. Nobody changes their own account this way (an administrator locked out of their
    role would need another one anyway)."""
    require(principal, Role.ADMIN, action="manage users")
    if name == principal.name:
        raise UserError("you cannot change your own role or disable yourself: ask another "
                        "administrator")
    row = await session.get(UserRow, name)
    if row is None:
        raise UserError(f"no user {name}")
    before = {"role": row.role, "disabled": row.disabled}
    if role is not None:
        row.role = role.value
    if active is not None:
        row.disabled = not active
    after = {"role": row.role, "disabled": row.disabled}
    if after == before:
        return False
    if row.disabled and not before["disabled"]:
        await end_access(session, name)
    await audit.record(session, actor=principal.name, action="user.change", subject=f"user:{name}",
                       before=before, after=after)
    return True


async def end_sessions(session: AsyncSession, name: str) -> None:
    """End every console session of ``name`` (they must sign in again)."""
    await session.execute(update(ConsoleSessionRow).where(
        ConsoleSessionRow.user_name == name, ConsoleSessionRow.revoked_at.is_(None))
        .values(revoked_at=utcnow()))


async def end_access(session: AsyncSession, name: str) -> None:
    """End every console session of ``name`` and revoke every API token."""
    await end_sessions(session, name)
    await session.execute(update(ApiToken).where(
        ApiToken.user_name == name, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
