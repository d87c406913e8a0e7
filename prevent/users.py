"""Local users, roles and API tokens: who may do what.

Passwords are stored only as argon2 hashes; API tokens only as their SHA-256 (a token
is random and long, so a fast hash suffices and lookups stay O(1)). Role checks live
here, in the domain, so the web layer cannot forget them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.contracts import utcnow
from prevent.platform.storage.dialect import advisory_xact_lock
from prevent.platform.storage.tables import ApiToken, AuditRow, ConsoleSessionRow, UserRow

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,99}$")
MIN_PASSWORD = 12
MAX_NAME = 100
TOKEN_MAX_AGE = timedelta(days=90)  # default of PREVENT_API_TOKEN_MAX_AGE_DAYS
_hasher = PasswordHasher()


# ------------------------------------------------------------------ passwords, off the loop
# argon2 takes a few hundred milliseconds of CPU on purpose: run in a thread, it never holds the
# event loop (health checks and other requests go on while a password is checked).


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """A hash of a random password nobody knows: checked for unknown or disabled users, so
    every failed sign-in costs the same argon2 work (the time does not tell a name exists)."""
    return _hasher.hash(secrets.token_urlsafe(24))


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash, the same work against a decoy, then False."""
    if password_hash is None:
        decoy = await asyncio.to_thread(_decoy_hash)
        await asyncio.to_thread(_verify, decoy, password)
        return False
    return await asyncio.to_thread(_verify, password_hash, password)


# ------------------------------------------------------------------ TOTP secrets at rest
# Sealed with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived with HKDF from the
# secret key (PREVENT_SECRET_KEY or var/secret_key): a copy of the database alone does not
# give the second factors away. A value without the prefix is a secret stored before this
# (migration 0006): still read, and sealed at its next use.
SEALED_PREFIX = "fernet:"


@lru_cache(maxsize=8)
def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"prevent.users.totp_secret.v1").derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def seal_totp(key: str, secret: str) -> str:
    return SEALED_PREFIX + _fernet(key).encrypt(secret.encode()).decode()


def open_totp(key: str | None, stored: str) -> str | None:
    """The base32 secret of a stored value; None when it cannot be opened (another key)."""
    if not stored.startswith(SEALED_PREFIX):
        return stored
    if key is None:
        return None
    try:
        return _fernet(key).decrypt(stored[len(SEALED_PREFIX):].encode()).decode()
    except InvalidToken:
        return None


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
    session.add(UserRow(name=name, role=role.value, password_hash=await hash_password(password),
                        created_at=utcnow(), disabled=False))
    await audit.record(session, actor=actor, action="user.add", subject=f"user:{name}",
                       after={"role": role.value})


async def create_user(session: AsyncSession, principal: Principal, name: str, role: Role,
                      password: str) -> None:
    """Administrators manage users (the CLI, run on the server, calls ``add_user`` directly)."""
    require(principal, Role.ADMIN, action="manage users")
    await add_user(session, name, role, password, actor=principal.name)


def _unknown_subject(name: str, key: str | None) -> str:
    """The audit subject of a failed sign-in under a name that is no user: never the typed text
    (a password typed into the name field would be in a trail every role reads), but a keyed
    digest of it, so the per-account limit still counts attempts at that name (a name that
    exists would otherwise be told apart by being the only one ever blocked)."""
    digest = hmac.new((key or "prevent").encode(), name.encode(), hashlib.sha256).hexdigest()
    return f"sign-in:{digest[:24]}"


async def _subject_for(session: AsyncSession, name: str, key: str | None) -> tuple[UserRow | None, str]:
    row = await session.get(UserRow, name) if NAME_PATTERN.match(name) else None
    return row, (f"user:{name}" if row is not None else _unknown_subject(name, key))


async def login(session: AsyncSession, name: str, password: str, *, key: str | None = None
                ) -> Principal | None:
    """Verify a password; None when wrong. Every attempt, good or bad, is audited (without the
    password, and without the name when it is no user's) in the caller's transaction: it
    returns instead of raising so the caller commits the failed attempt's entry too. The
    argon2 check runs in a thread, and costs the same for a name that is no user."""
    row, subject = await _subject_for(session, name, key)
    usable = row is not None and not row.disabled
    ok = await verify_password(row.password_hash if usable and row else None, password)
    actor = name if row is not None else "unknown"
    await audit.record(session, actor=actor, action="auth.login" if ok else "auth.login_failed",
                       subject=subject)
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


async def _count_failures(session: AsyncSession, subject: str) -> int:
    return (await session.execute(select(func.count()).select_from(AuditRow).where(
        AuditRow.subject == subject, AuditRow.action.in_(FAILED_SIGN_INS),
        AuditRow.at >= utcnow() - SIGN_IN_WINDOW))).scalar_one()


async def failed_sign_ins(session: AsyncSession, name: str, *, key: str | None = None) -> int:
    """Failed sign-ins of ``name`` in the last ``SIGN_IN_WINDOW``, read from the audit trail: every
    console and API replica, and both ways in, share the count."""
    return await _count_failures(session, (await _subject_for(session, name, key))[1])


# One lock per account name and event loop: the count, the password check and the recorded
# failure of one sign-in happen before the next attempt at that name reads the count (40
# concurrent attempts check the password 5 times, not 40). Across processes on PostgreSQL
# a transaction advisory lock per name does the same (``_lock_account``).
_Locks = weakref.WeakValueDictionary[str, asyncio.Lock]
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Locks] = weakref.WeakKeyDictionary()


def normal_name(name: str) -> str:
    """Names are matched as lower case, as they are stored."""
    return name.strip().lower()


@asynccontextmanager
async def sign_in_lock(name: str) -> AsyncIterator[None]:
    """Hold around the transaction that calls ``sign_in`` (until it commits)."""
    locks = _LOCKS.setdefault(asyncio.get_running_loop(), weakref.WeakValueDictionary())
    key = normal_name(name)[:MAX_NAME + 1]
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    async with lock:
        yield


async def _lock_account(session: AsyncSession, subject: str) -> None:
    await advisory_xact_lock(session, f"prevent.sign-in:{subject}")  # PostgreSQL only


async def sign_in(session: AsyncSession, name: str, password: str, code: str = "", *,
                  key: str | None = None) -> Principal | Refusal:
    """The password, then the second factor: a user with one enrolled gives its current code,
    and an administrator without one cannot sign in. The console and ``POST /api/login`` both
    come here, so neither door is weaker than the other. Every attempt is audited in the
    caller's transaction (refusals are returned, not raised, so the caller commits them).
    Callers hold ``sign_in_lock(name)`` until that transaction commits, so the limit per
    account is exact under concurrency. ``key`` is the secret key: it opens TOTP secrets and
    keys the audit subject of names that are no user."""
    name = normal_name(name)
    known, subject = await _subject_for(session, name, key)
    await _lock_account(session, subject)
    if await _count_failures(session, subject) >= MAX_FAILED_SIGN_INS:
        await audit.record(session, actor=name if known is not None else "unknown",
                           action="auth.sign_in_blocked", subject=subject)
        return Refusal("Too many failed sign-ins. Wait 15 minutes, or ask an administrator.",
                       blocked=True)
    principal = await login(session, name, password, key=key)
    if principal is None:
        return Refusal(GENERIC_FAILURE)
    row = await session.get(UserRow, name)
    problem = _check_second_factor(row, code, key)
    if problem:
        await audit.record(session, actor=name, action="auth.second_factor_failed",
                           subject=f"user:{name}")
        return Refusal(problem)
    return principal


def _check_second_factor(row: UserRow | None, code: str, key: str | None = None) -> str | None:
    """What is wrong with the second factor, or None (a code then counts as used)."""
    if row is None:
        return GENERIC_FAILURE
    if row.totp_secret:
        secret = open_totp(key, row.totp_secret)
        if secret is None:
            return GENERIC_FAILURE
        step = _totp_step(secret, code)
        # A code is good once: seen over a shoulder or phished, it cannot be used again.
        if step is None or (row.totp_last_step is not None and step <= row.totp_last_step):
            return GENERIC_FAILURE
        row.totp_last_step = step
        if key is not None and not row.totp_secret.startswith(SEALED_PREFIX):
            row.totp_secret = seal_totp(key, secret)  # stored before sealing: sealed now
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


async def principal_for_token(session: AsyncSession, token: str, *,
                              max_age: timedelta = TOKEN_MAX_AGE) -> Principal:
    """The user of a live token: not revoked, its user active, issued less than ``max_age``
    ago (``PREVENT_API_TOKEN_MAX_AGE_DAYS``)."""
    row = (await session.execute(
        select(UserRow).join(ApiToken, ApiToken.user_name == UserRow.name)
        .where(ApiToken.token_sha256 == token_digest(token), ApiToken.revoked_at.is_(None),
               ApiToken.created_at >= utcnow() - max_age,
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
    nothing changed. A role change or disabling ends the user's console sessions and revokes
    their API tokens at once (a promotion to admin must not ride on a session or token made
    without the second factor): re-enabling brings neither back. Nobody changes their own
    account this way (an administrator locked out of their role would need another one
    anyway)."""
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
    if (row.disabled and not before["disabled"]) or row.role != before["role"]:
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
