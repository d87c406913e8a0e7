"""Every non-public route refuses anonymous requests; every state-changing route refuses a
session request without the CSRF token; sessions, headers and sign-in limits behave."""

from __future__ import annotations

import re
import time
from contextlib import aclosing

import httpx
import pyotp
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import select

from prevent import users
from prevent.platform.storage.tables import AuditRow, UserRow
from prevent.users import Role
from prevent.web import security, sessions

from .conftest import PASSWORD, Console, post_signin, signin_form

PUBLIC = security.PUBLIC_PATHS | {security.METRICS_PATH}  # /metrics: public by default
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def protected_routes(console: Console) -> list[tuple[str, str]]:
    # iter_route_contexts flattens included routers (app.routes holds them lazily).
    found = [(method, route.path) for route in iter_route_contexts(console.app.routes)
             if isinstance(route.original_route, APIRoute) and route.path not in PUBLIC
             for method in sorted(route.methods or ())]
    assert len(found) > 30, "the console's routes were enumerated"
    return found


async def test_every_protected_route_rejects_anonymous_requests(console: Console) -> None:
    async with console.client() as client:
        for method, path in protected_routes(console):
            response = await client.request(method, concrete(path), headers={"accept": "text/html"})
            if response.status_code == 303:
                assert response.headers["location"].startswith("/signin?next="), (method, path)
                assert method == "GET", (method, path)
            else:
                assert response.status_code in (401, 403), (method, path, response.status_code)


async def test_every_state_changing_route_rejects_a_session_without_csrf(console: Console) -> None:
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        unsafe = [(m, p) for m, p in protected_routes(console) if m in UNSAFE]
        assert unsafe
        for method, path in unsafe:
            for data in ({}, {"csrf_token": "forged"}):
                response = await client.request(method, concrete(path), data=data)
                assert response.status_code == 403, (method, path, response.status_code)
                assert "CSRF" in response.text, (method, path)
        # The same session with the token gets through to the domain (here: a missing alert).
        response = await client.post("/alerts/nope/confirm", data={"csrf_token": token, "revision": "1"})
        assert response.status_code == 404


async def test_public_routes_answer_without_a_session(console: Console) -> None:
    async with console.client() as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/signin")).status_code == 200


async def test_bearer_calls_are_exempt_from_csrf(console: Console) -> None:
    async with console.db.transaction() as session:
        token = await users.issue_token(session, "duty-inspector", actor="test")
    async with console.client() as client:
        response = await client.post("/api/alerts/nope/confirm", json={"revision": 1},
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404


async def test_security_headers_and_cookie_flags(console: Console) -> None:
    async with console.client() as client:
        page = await client.get("/signin")
        signin = await post_signin(client, **{"name": "viewer", "password": PASSWORD})
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    cookie = signin.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # plain http
    # X-Forwarded-Proto is believed only from a trusted proxy (PREVENT_TRUSTED_PROXIES).
    settings = console.app.state.console.settings
    for trusted, secure in (("", False), ("127.0.0.0/8", True)):
        console.app.state.console.settings = settings.model_copy(update={"trusted_proxies": trusted})
        async with console.client() as client:
            client.headers["x-forwarded-proto"] = "https"
            form = await signin_form(client, name="viewer", password=PASSWORD)
            # The jar keeps a Secure cookie from plain http: sent by hand, as a browser talking
            # https to the proxy would.
            pre = client.cookies.get("prevent_signin")
            client.cookies.clear()
            https = await client.post("/signin", data=form, headers={"cookie": f"prevent_signin={pre}"})
        assert https.status_code == 303
        assert ("secure" in https.headers["set-cookie"].lower()) is secure, trusted
        assert ("strict-transport-security" in https.headers) is secure, trusted
    console.app.state.console.settings = settings


async def test_signout_and_password_change_revoke_sessions(console: Console) -> None:
    client, token = await console.signed_in(Role.VIEWER)
    other, _ = await console.signed_in(Role.VIEWER)
    async with aclosing(client), aclosing(other):
        changed = await client.post("/account/password", data={
            "csrf_token": token, "current": PASSWORD, "new": "another long password",
            "repeat": "another long password"})
        assert changed.status_code == 303
        for c in (client, other):  # every session of the user ended, not just this one
            assert (await c.get("/", headers={"accept": "text/html"})).status_code == 303
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        assert (await client.post("/signout", data={"csrf_token": token})).status_code == 303
        client.cookies.clear()
    async with console.db.transaction() as session:
        rows = (await session.execute(sessions.ConsoleSessionRow.__table__.select())).all()
    assert rows and all(r.revoked_at is not None for r in rows)


async def test_idle_and_absolute_timeouts(console: Console) -> None:
    from datetime import timedelta

    from prevent.contracts import utcnow

    start = utcnow()
    async with console.db.transaction() as session:
        sid = await sessions.create(session, "viewer", now=start)
    async with console.db.transaction() as session:
        assert await sessions.resolve(session, sid, now=start + timedelta(minutes=29)) is not None
    async with console.db.transaction() as session:
        assert await sessions.resolve(session, sid, now=start + timedelta(minutes=61)) is None
    async with console.db.transaction() as session:
        sid = await sessions.create(session, "viewer", now=start)
    for minutes in range(20, 12 * 60, 20):  # active all along, still ends after 12 hours
        async with console.db.transaction() as session:
            alive = await sessions.resolve(session, sid, now=start + timedelta(minutes=minutes))
        assert alive is not None
    async with console.db.transaction() as session:
        assert await sessions.resolve(session, sid, now=start + timedelta(hours=12, minutes=5)) is None


async def test_signin_is_rate_limited_per_account(console: Console) -> None:
    async with console.client() as client:
        for _ in range(5):
            bad = await post_signin(client, **{"name": "viewer", "password": "wrong password!"})
            assert bad.status_code == 401
        blocked = await post_signin(client, **{"name": "viewer", "password": PASSWORD})
    assert blocked.status_code == 429


async def test_the_account_limit_is_shared_by_every_replica_and_the_api(console: Console) -> None:
    """Two console replicas on one database, and the API: failures add up wherever they
    happen, because they are counted from the audit trail, not in a process's memory."""
    from prevent.web.app import ConsoleState, create_app

    other = create_app(None)  # type: ignore[arg-type] - a second replica, same database
    other.state.console = ConsoleState(db=console.db, settings=console.app.state.console.settings)
    wrong = {"name": "viewer", "password": "wrong password!"}
    async with console.client() as first, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other), base_url="http://console") as second:
        for client in (first, second, first):
            assert (await post_signin(client, **wrong)).status_code == 401
        for _ in range(2):
            assert (await second.post("/api/login", json=wrong)).status_code == 401
        blocked = await post_signin(first, **{"name": "viewer", "password": PASSWORD})
        api_blocked = await second.post("/api/login", json={"name": "viewer", "password": PASSWORD})
        other_account = await post_signin(first, **{"name": "duty-inspector",
                                                          "password": PASSWORD})
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
    assert api_blocked.status_code == 429
    assert other_account.status_code == 303  # only the attacked account is held
    async with console.db.transaction() as session:
        actions = list((await session.execute(select(AuditRow.action).where(
            AuditRow.subject == "user:viewer", AuditRow.action.like("auth.%"))
            .order_by(AuditRow.at))).scalars())
    assert actions == ["auth.login_failed"] * 5 + ["auth.sign_in_blocked"] * 2


async def test_many_failures_from_one_address_are_refused_for_any_account(console: Console) -> None:
    async with console.client() as client:
        for n in range(20):  # 20 accounts, one wrong password each: no account limit is reached
            response = await post_signin(client, **{"name": f"guess-{n}", "password": "x" * 12})
            assert response.status_code == 401
        refused = await post_signin(client, **{"name": "viewer", "password": PASSWORD})
    assert refused.status_code == 429 and "from this address" in refused.text


async def test_signin_limiter_is_a_sliding_window_per_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])  # the window's clock (``limits``)
    limiter = security.SigninLimiter(per_address=3, window_seconds=60)
    assert not await limiter.blocked("192.0.2.1")  # a check counts nothing
    for _ in range(2):
        await limiter.failed("192.0.2.1")
        now[0] += 10
    assert not await limiter.blocked("192.0.2.1")
    await limiter.failed("192.0.2.1")
    assert await limiter.blocked("192.0.2.1")
    assert not await limiter.blocked("192.0.2.2")  # only that address
    now[0] += 41  # the first failure (61 s ago) has left the window: 2 of 3 remain
    assert not await limiter.blocked("192.0.2.1")
    await limiter.failed("192.0.2.1")
    assert await limiter.blocked("192.0.2.1")
    now[0] += 61
    assert not await limiter.blocked("192.0.2.1")


@pytest.mark.parametrize("with_code", [False, True])
async def test_admins_need_a_second_factor(console: Console, with_code: bool) -> None:
    secret = pyotp.random_base32()
    async with console.db.transaction() as session:
        await users.add_user(session, "root-admin", Role.ADMIN, PASSWORD, actor="test")
        if with_code:
            (await session.get(UserRow, "root-admin")).totp_secret = secret
    async with console.client() as client:
        no_code = await post_signin(client, **{"name": "root-admin", "password": PASSWORD})
        assert no_code.status_code == 401
        if with_code:
            ok = await post_signin(client, **{"name": "root-admin", "password": PASSWORD,
                                                    "code": pyotp.TOTP(secret).now()})
            assert ok.status_code == 303
        else:
            assert "second factor" in no_code.text


async def test_a_one_time_code_is_good_once(console: Console) -> None:
    """A code seen over a shoulder or phished cannot be used again within its 90 s window;
    the next code still works, an older one does not."""
    secret = pyotp.random_base32()
    async with console.db.transaction() as session:
        await users.add_user(session, "code-admin", Role.ADMIN, PASSWORD, actor="test")
        (await session.get(UserRow, "code-admin")).totp_secret = secret
    totp = pyotp.TOTP(secret)

    async def sign_in(code: str) -> int:
        async with console.client() as client:
            return (await post_signin(client, **{"name": "code-admin", "password": PASSWORD,
                                                       "code": code})).status_code

    code = totp.now()
    assert await sign_in(code) == 303
    assert await sign_in(code) == 401  # replayed
    assert await sign_in(totp.at(time.time() + 30)) == 303  # the next step's code
    assert await sign_in(totp.at(time.time() - 30)) == 401  # older than the last one used


async def test_next_parameter_cannot_redirect_off_site(console: Console) -> None:
    async with console.client() as client:
        response = await post_signin(client, **{"name": "viewer", "password": PASSWORD,
                                                      "next": "//evil.example/"})
    assert response.headers["location"] == "/"


async def test_metrics_count_alerts_and_notices_by_state(console: Console) -> None:
    from prevent.alerts import lifecycle
    from prevent.users import Principal

    async with console.db.transaction() as session:
        await lifecycle.raise_exercise(session, Principal("duty-inspector", Role.DUTY_INSPECTOR),
                                       playbook_id="place-of-worship-attack", communities=["muslim"],
                                       severity=2, title="Exercise for metrics")
    async with console.client() as client:
        text = (await client.get("/metrics")).text
    assert 'prevent_alerts{state="proposed"} 1.0\n' in text
    assert "# TYPE prevent_notices gauge" in text
