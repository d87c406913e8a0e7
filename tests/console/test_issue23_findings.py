"""Issue 23's access findings on the console and the API: each test fails without its fix.

M2 atomic sign-in counting, M3 TOTP secrets sealed, M4 is in test_accounts.py, L1 token expiry
and revocation, L2 audit without typed names, L3 argon2 off the loop, L4 forwarded headers,
L5 demo pages, L8 4xx for bad input, L9 body limits, L10 SMS replays, L11 login CSRF,
L12 headers.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from contextlib import aclosing
from datetime import timedelta

import httpx
import pyotp
from pydantic import SecretStr
from sqlalchemy import select, update

from notifiers.channels.http import SIGNATURE_HEADER, sign
from prevent import users
from prevent.contracts import utcnow
from prevent.partners import registry
from prevent.platform.storage.tables import ApiToken, AuditRow, UserRow, WebSubSubscription
from prevent.users import Role
from prevent.web.sessions import enroll_totp

from .conftest import PASSWORD, Console, post_signin, signin_form


def client_at(console: Console, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=console.app, client=(address, 4000)),
                             base_url="http://console")


class CountingHasher:
    """argon2's hasher, counting how often, and on which threads, a password was checked."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()
        self._inner = users._hasher

    def verify(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
            self.threads.add(threading.get_ident())
        return self._inner.verify(password_hash, password)

    def hash(self, password: str) -> str:
        return self._inner.hash(password)


# ------------------------------------------------------------------ M2


async def test_concurrent_sign_ins_check_the_password_at_most_the_limit(console: Console,
                                                                         monkeypatch) -> None:
    counting = CountingHasher()
    monkeypatch.setattr(users, "_hasher", counting)
    clients = [client_at(console, f"10.1.0.{n}") for n in range(40)]
    try:
        forms = [await signin_form(c, name="viewer", password="wrong password!") for c in clients]
        answers = await asyncio.gather(*(c.post("/signin", data=f) for c, f in zip(clients, forms,
                                                                                    strict=True)))
    finally:
        for c in clients:
            await c.aclose()
    assert counting.calls == users.MAX_FAILED_SIGN_INS
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [401] * 5 + [429] * 35

    counting.calls = 0
    api_clients = [client_at(console, f"10.2.0.{n}") for n in range(12)]
    try:
        api = await asyncio.gather(*(c.post("/api/login", json={
            "name": "duty-inspector", "password": "wrong password!"}) for c in api_clients))
    finally:
        for c in api_clients:
            await c.aclose()
    assert counting.calls == users.MAX_FAILED_SIGN_INS
    assert sorted(a.status_code for a in api) == [401] * 5 + [429] * 7


# ------------------------------------------------------------------ M3 (TOTP at rest)


async def test_totp_secrets_are_stored_encrypted_and_still_work(console: Console) -> None:
    async with console.db.transaction() as session:
        await users.add_user(session, "sealed-admin", Role.ADMIN, PASSWORD, actor="test")
        uri = await enroll_totp(session, "sealed-admin", actor="test", key=console.key)
    secret = pyotp.parse_uri(uri).secret
    async with console.db.transaction() as session:
        stored = (await session.get(UserRow, "sealed-admin")).totp_secret
    assert stored.startswith(users.SEALED_PREFIX) and secret not in stored
    assert users.open_totp("another key", stored) is None  # the database alone opens nothing
    async with console.client() as client:
        ok = await post_signin(client, name="sealed-admin", password=PASSWORD,
                               code=pyotp.TOTP(secret).now())
    assert ok.status_code == 303


async def test_a_secret_stored_before_sealing_is_sealed_at_its_next_use(console: Console) -> None:
    secret = pyotp.random_base32()
    async with console.db.transaction() as session:
        await users.add_user(session, "old-admin", Role.ADMIN, PASSWORD, actor="test")
        (await session.get(UserRow, "old-admin")).totp_secret = secret  # as before migration 0006
    async with console.client() as client:
        ok = await post_signin(client, name="old-admin", password=PASSWORD,
                               code=pyotp.TOTP(secret).now())
    assert ok.status_code == 303
    async with console.db.transaction() as session:
        stored = (await session.get(UserRow, "old-admin")).totp_secret
    assert stored.startswith(users.SEALED_PREFIX) and users.open_totp(console.key, stored) == secret


# ------------------------------------------------------------------ L1


async def test_tokens_expire_and_end_with_a_password_change(console: Console) -> None:
    async with console.db.transaction() as session:
        old = await users.issue_token(session, "viewer", actor="test")
        fresh = await users.issue_token(session, "viewer", actor="test")
        await session.execute(update(ApiToken).where(ApiToken.token_sha256 == users.token_digest(old))
                              .values(created_at=utcnow() - timedelta(days=91)))
    async with console.client() as client:
        assert (await client.get("/api/me", headers={"Authorization": f"Bearer {old}"})
                ).status_code == 401  # past PREVENT_API_TOKEN_MAX_AGE_DAYS (90)
        assert (await client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"})
                ).status_code == 200
    client, token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        changed = await client.post("/account/password", data={
            "csrf_token": token, "current": PASSWORD, "new": "another long password",
            "repeat": "another long password"})
        assert changed.status_code == 303
        assert (await client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"})
                ).status_code == 401


# ------------------------------------------------------------------ L2


async def test_failed_sign_ins_never_put_the_typed_name_in_the_audit_trail(console: Console) -> None:
    typed = "Correct-Horse-Battery-Staple-42"  # a password typed into the name field
    async with console.client() as client:
        refused = await post_signin(client, name=typed, password="whatever it was")
        assert refused.status_code == 401
        api = await client.post("/api/login", json={"name": typed, "password": "x"})
        assert api.status_code == 401
        too_long = await client.post("/api/login", json={"name": "n" * 10_000, "password": "x"})
        assert too_long.status_code == 422
    async with console.db.transaction() as session:
        rows = (await session.execute(select(AuditRow).where(AuditRow.action.like("auth.%")))).scalars().all()
    assert rows, "failed sign-ins are still audited"
    text = json.dumps([[r.actor, r.subject, r.before, r.after, r.reason] for r in rows]).lower()
    assert typed.lower() not in text and "n" * 200 not in text
    # ...and a name that is no user's still counts toward its own limit (no enumeration by 429).
    async with console.client() as client:
        for _ in range(users.MAX_FAILED_SIGN_INS):
            await client.post("/api/login", json={"name": "no-such-user", "password": "x"})
        blocked = await client.post("/api/login", json={"name": "no-such-user", "password": "x"})
    assert blocked.status_code == 429


# ------------------------------------------------------------------ L3


async def test_argon2_runs_off_the_event_loop_and_as_much_for_unknown_names(console: Console,
                                                                             monkeypatch) -> None:
    counting = CountingHasher()
    monkeypatch.setattr(users, "_hasher", counting)
    loop_thread = threading.get_ident()
    async with console.client() as client:
        assert (await post_signin(client, name="viewer", password="wrong password!")).status_code == 401
        assert counting.calls == 1
        assert (await post_signin(client, name="nobody-here", password="wrong password!")
                ).status_code == 401
        assert counting.calls == 2  # the same argon2 work for a name that is no user
        assert (await client.post("/api/login", json={"name": "nobody-else", "password": "x"})
                ).status_code == 401
        assert counting.calls == 3
    assert loop_thread not in counting.threads


# ------------------------------------------------------------------ L4


async def test_forwarded_for_is_believed_only_from_trusted_proxies(console: Console) -> None:
    state = console.app.state.console
    async with client_at(console, "127.0.0.1") as client:
        for n in range(20):  # each claims another address; all come from one peer
            client.headers["x-forwarded-for"] = f"203.0.113.{n}"
            assert (await post_signin(client, name=f"guess-{n}", password="x" * 12)).status_code == 401
        client.headers["x-forwarded-for"] = "203.0.113.200"
        refused = await post_signin(client, name="viewer", password=PASSWORD)
    assert refused.status_code == 429 and "from this address" in refused.text

    console.app.state.signin_limiter = type(console.app.state.signin_limiter)()
    state.settings = state.settings.model_copy(update={"trusted_proxies": "127.0.0.1, 10.9.0.0/16"})
    async with client_at(console, "127.0.0.1") as client:
        for n in range(20):  # behind our proxies, the client's own address is the one counted
            client.headers["x-forwarded-for"] = f"198.51.100.7, 203.0.113.{n}, 10.9.1.1"
            assert (await post_signin(client, name=f"guess-{n}", password="x" * 12)).status_code == 401
        client.headers["x-forwarded-for"] = "203.0.113.200"
        allowed = await post_signin(client, name="viewer", password=PASSWORD)
    assert allowed.status_code == 303


def test_uvicorn_does_not_rewrite_the_client_address_itself() -> None:
    from prevent.cli import main as cli

    options = cli._uvicorn_options("127.0.0.1", 8000)
    assert options["proxy_headers"] is False


# ------------------------------------------------------------------ L5


async def test_demo_pages_only_for_roles_that_may_see_contact_data(console: Console) -> None:
    for role, allowed in ((Role.VIEWER, False), (Role.DUTY_INSPECTOR, False),
                          (Role.ENGAGEMENT_OFFICER, True)):
        client, _ = await console.signed_in(role)
        async with aclosing(client):
            for path in ("/outbox", "/overview"):
                status = (await client.get(path)).status_code
                assert status == (200 if allowed else 403), (role, path, status)


# ------------------------------------------------------------------ L8


async def test_bad_input_gets_a_4xx_and_a_message(console: Console) -> None:
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        nan = await client.post("/api/alerts/x/confirm", content=b'{"revision": NaN}',
                                headers={"content-type": "application/json", "x-csrf-token": token})
        assert nan.status_code == 422 and "revision" in nan.text
        audit_page = await client.get("/audit?hours=99999999999")
        assert audit_page.status_code == 400 and "out of range" in audit_page.text
        api_audit = await client.get("/api/audit?since_hours=1e12")
        assert api_audit.status_code == 422
    officer, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(officer):
        latin1 = "site_id,site_name,communities,municipality\ns1,Église Sainte-Thérèse,christian,Lyon\n"
        imported = await officer.post("/partners/import", data={"csrf_token": token},
                                      files={"file": ("r.csv", latin1.encode("latin-1"), "text/csv")})
        assert imported.status_code in (400, 422) and "UTF-8" in imported.text
        for source in ("id: x\nrules: " + "[" * 10_000 + "]" * 10_000, "id: x\x00\nname: y\n"):
            for action in ("check", "save"):
                edited = await officer.post("/playbooks/new", data={
                    "csrf_token": token, "source": source, "action": action, "note": "n"})
                assert 400 <= edited.status_code < 500, (action, edited.status_code)
                assert "line" in edited.text or "nested" in edited.text or "character" in edited.text
    async with console.db.transaction() as session:
        session.add(WebSubSubscription(
            feed_id="f1", callback_id="cb1", hub_url="https://hub.example/", topic="https://t.example/",
            secret="s", state="pending", pending_mode="subscribe", lease_seconds=3600,
            requested_at=utcnow()))
    async with console.client() as anonymous:
        for value in ("1" + "0" * 20, "1e20"):
            lease = await anonymous.get("/websub/cb1", params={
                "hub.mode": "subscribe", "hub.topic": "https://t.example/", "hub.challenge": "c",
                "hub.lease_seconds": value})
            assert lease.status_code == 400 and "lease_seconds" in lease.text
        ok = await anonymous.get("/websub/cb1", params={
            "hub.mode": "subscribe", "hub.topic": "https://t.example/", "hub.challenge": "c",
            "hub.lease_seconds": "86400"})
        assert ok.status_code == 200 and ok.text == "c"


# ------------------------------------------------------------------ L9


async def test_request_bodies_are_limited_per_route(console: Console) -> None:
    async with console.client() as client:
        huge = await client.post("/api/login", content=b"x" * (50 * 1024 * 1024),
                                 headers={"content-type": "application/json"})
        assert huge.status_code == 413

        async def stream():  # no Content-Length: refused once the limit is passed
            for _ in range(64):
                yield b"x" * 1024

        streamed = await client.post("/api/login", content=stream(),
                                     headers={"content-type": "application/json"})
        assert streamed.status_code == 413
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        headers = {"x-csrf-token": token}
        big = await client.post("/api/exercises", headers=headers, json={
            "playbook": "place-of-worship-attack", "communities": ["muslim"], "severity": 2,
            "title": "Exercise", "summary": "s" * 3_000_000})
        assert big.status_code == 413
        wide = await client.post("/api/exercises", headers=headers, json={
            "playbook": "place-of-worship-attack", "communities": ["muslim"] * 100_000,
            "severity": 2, "title": "Exercise"})
        assert wide.status_code in (413, 422)
        long_summary = await client.post("/api/exercises", headers=headers, json={
            "playbook": "place-of-worship-attack", "communities": ["muslim"], "severity": 2,
            "title": "Exercise", "summary": "s" * 20_000})
        assert long_summary.status_code == 422
        many = await client.post("/api/exercises", headers=headers, json={
            "playbook": "place-of-worship-attack", "communities": [f"c{n}" for n in range(51)],
            "severity": 2, "title": "Exercise"})
        assert many.status_code == 422


async def test_imports_have_a_row_limit_and_are_parsed_off_the_loop(console: Console,
                                                                     monkeypatch) -> None:
    threads: list[int] = []
    parse = registry.parse_registry

    def recording(*args, **kwargs):
        threads.append(threading.get_ident())
        return parse(*args, **kwargs)

    monkeypatch.setattr(registry, "parse_registry", recording)
    state = console.app.state.console
    state.settings = state.settings.model_copy(update={"import_max_rows": 3})
    header = "site_id,site_name,communities,municipality\n"
    officer, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(officer):
        rows = "".join(f"s{n},Site {n},muslim,Town\n" for n in range(4))
        refused = await officer.post("/partners/import", data={"csrf_token": token},
                                     files={"file": ("r.csv", (header + rows).encode(), "text/csv")})
        assert refused.status_code == 422 and "more than 3 rows" in refused.text
        assert threads == []
        rows = "".join(f"s{n},Site {n},muslim,Town\n" for n in range(3))
        ok = await officer.post("/partners/import", data={"csrf_token": token},
                                files={"file": ("r.csv", (header + rows).encode(), "text/csv")})
        assert ok.status_code == 200, ok.text
    assert threads and threading.get_ident() not in threads


# ------------------------------------------------------------------ L10


async def test_a_signed_sms_reply_is_taken_once(console: Console) -> None:
    state = console.app.state.console
    state.settings = state.settings.model_copy(update={"sms_inbound_secret": SecretStr("inbound-secret")})
    body = json.dumps({"from": "+447700900123", "text": "ACK"}).encode()
    signature = sign("inbound-secret", body, int(time.time()))
    async with console.client() as client:
        first = await client.post("/sms/inbound", content=body, headers={SIGNATURE_HEADER: signature})
        replay = await client.post("/sms/inbound", content=body, headers={SIGNATURE_HEADER: signature})
        padded = await client.post("/sms/inbound", content=body,
                                   headers={SIGNATURE_HEADER: signature + ",v1=00"})
    assert first.status_code == 200
    assert replay.status_code == 409 and padded.status_code == 409


# ------------------------------------------------------------------ L11


async def test_sign_in_needs_the_pre_session_token(console: Console) -> None:
    async with console.client() as client:
        cross_site = await client.post("/signin", data={"name": "viewer", "password": PASSWORD})
        assert cross_site.status_code == 403 and "prevent_session" not in client.cookies
        form = await signin_form(client, name="viewer", password=PASSWORD)
    async with console.client() as other:  # a token from another browser's form
        await other.get("/signin")
        forged = await other.post("/signin", data=form)
        assert forged.status_code == 403 and "prevent_session" not in other.cookies
        assert (await post_signin(other, name="viewer", password=PASSWORD)).status_code == 303


# ------------------------------------------------------------------ L12


async def test_json_is_not_cached_and_https_gets_hsts(console: Console) -> None:
    client, _ = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        for path in ("/api/registry", "/api/me", "/healthz"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.headers["cache-control"] == "no-store", path
            assert "strict-transport-security" not in response.headers  # plain http
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=console.app),
                                 base_url="https://console") as https:
        assert "max-age=" in (await https.get("/healthz")).headers["strict-transport-security"]


# ------------------------------------------------------------------ L6 (the console's side)


async def test_only_http_and_https_report_links_are_rendered(console: Console) -> None:
    from prevent.alerts import lifecycle
    from prevent.platform.storage.tables import IncidentRow
    from prevent.users import Principal

    async with console.db.transaction() as session:
        alert = await lifecycle.raise_exercise(
            session, Principal("duty-inspector", Role.DUTY_INSPECTOR),
            playbook_id="place-of-worship-attack", communities=["muslim"], severity=2,
            title="Exercise with odd links")
        now = utcnow()
        for n, url in enumerate(("javascript:alert(document.cookie)", " JavaScript:alert(1)",
                                 "data:text/html,hi", "HTTPS://news.example/report")):
            session.add(IncidentRow(
                incident_id=f"odd-{n}", content_hash="h", feed_id="test", cluster_id=alert.cluster_id,
                title=f"Report {n}", published_at=now, received_at=now, classification=None,
                payload={"incident_id": f"odd-{n}", "title": f"Report {n}", "url": url}))
    client, _ = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        page = await client.get(f"/alerts/{alert.alert_id}")
    assert page.status_code == 200 and "Report 0" in page.text
    hrefs = [h.lower() for h in re.findall(r'href="([^"]*)"', page.text)]
    assert not [h for h in hrefs if h.strip().startswith(("javascript:", "data:"))]
    assert "https://news.example/report" in hrefs
