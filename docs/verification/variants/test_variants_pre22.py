"""Variants of issue 22/23 tests that avoid names added by the fixes, so that on the old
code (9028090) they fail on the assertion about the behaviour. Not part of the project."""

from __future__ import annotations

import inspect
import json
import socket
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path

import pyotp
from sqlalchemy import select

from prevent import lifecycle, users
from prevent.config import Settings
from prevent.console.sessions import enroll_totp
from prevent.contracts import utcnow
from prevent.storage.tables import AuditRow, Contact, PatrolRow, UserRow
from prevent.users import Principal, Role

from .conftest import PASSWORD, Console, post_signin
from .test_patrol_extend import confirmed_alert_with_patrols

INSPECTOR = Principal("duty-inspector", Role.DUTY_INSPECTOR)
SITE = "site-masjid-riverside"


# defect 7: sink.port -> the bound port of the sink's server (in both trees)
async def test_v_defect_7_sample_webhook_follows_a_moved_demo_sink(tmp_path: Path) -> None:
    from prevent.services import running_system

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    settings = Settings(var_dir=tmp_path / "var", demo_http_sink_port=taken,
                        secret_key="test-secret-key-not-for-production")
    try:
        kwargs = {"demo": True} if "demo" in inspect.signature(running_system).parameters else {}
        async with running_system(settings, services=("centre-notifier",), feeds=[],
                                  **kwargs) as system:
            sink = system.http_sink
            port = sink.server.server_address[1]
            assert port != taken, "the sink moved off the taken port"
            async with system.ctx.db.transaction() as session:
                hooks = [c.webhook_url for c in (await session.execute(
                    select(Contact).where(Contact.webhook_url.is_not(None)))).scalars()]
            assert hooks, "the sample registry has a webhook contact"
            assert all(h.startswith(f"http://127.0.0.1:{port}/webhook/") for h in hooks), (port, hooks)
    finally:
        squatter.close()


# defect 9: a visit recorded through the API shows on the board and the alert page
async def test_v_defect_9_an_api_visit_shows_on_board_and_alert_page(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    async with console.db.transaction() as session:
        plan = (await session.execute(select(PatrolRow).where(PatrolRow.site_id == SITE))
                ).scalars().one()
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        api = await client.post(f"/api/patrols/{plan.assignment_id}/visits",
                                json={"visited_at": (utcnow() - timedelta(minutes=3)).isoformat(),
                                      "note": "all quiet"}, headers={"X-CSRF-Token": token})
        assert api.status_code == 201, api.text
        board = (await client.get("/patrols")).text
        page = (await client.get(f"/alerts/{alert_id}")).text
    assert "all quiet" in board, "the visit is not on the patrol board"
    assert "all quiet" in page, "the visit is not on the alert page"


# defect 13: an open alert page can learn that another inspector decided (live fragment)
async def test_v_defect_13_the_alert_page_follows_another_inspectors_decision(
        console: Console) -> None:
    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    await lifecycle.decide(console.db, Principal("other-inspector", Role.DUTY_INSPECTOR),
                           proposed.alert_id, action="confirm", expected_revision=proposed.revision)
    client, _token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        fragment = await client.get(f"/alerts/{proposed.alert_id}/situation")
    assert fragment.status_code == 200, f"no live situation fragment: {fragment.status_code}"
    assert f'data-revision="{proposed.revision + 1}"' in fragment.text


# M3: TOTP secrets at rest are not the plain secret
async def test_v_m3_a_totp_secret_is_not_stored_in_plain_text(console: Console) -> None:
    kwargs = {"key": console.key} if "key" in inspect.signature(enroll_totp).parameters else {}
    async with console.db.transaction() as session:
        await users.add_user(session, "sealed-admin", Role.ADMIN, PASSWORD, actor="test")
        uri = await enroll_totp(session, "sealed-admin", actor="test", **kwargs)
    secret = pyotp.parse_uri(uri).secret
    async with console.db.transaction() as session:
        stored = (await session.get(UserRow, "sealed-admin")).totp_secret
    assert secret not in stored, "the TOTP secret is stored in plain text"
    async with console.client() as client:
        ok = await post_signin(client, name="sealed-admin", password=PASSWORD,
                               code=pyotp.TOTP(secret).now())
    assert ok.status_code == 303


async def test_v_m3_a_plain_secret_is_sealed_at_its_next_use(console: Console) -> None:
    secret = pyotp.random_base32()
    async with console.db.transaction() as session:
        await users.add_user(session, "old-admin", Role.ADMIN, PASSWORD, actor="test")
        (await session.get(UserRow, "old-admin")).totp_secret = secret
    async with console.client() as client:
        ok = await post_signin(client, name="old-admin", password=PASSWORD,
                               code=pyotp.TOTP(secret).now())
    assert ok.status_code == 303
    async with console.db.transaction() as session:
        stored = (await session.get(UserRow, "old-admin")).totp_secret
    assert secret not in stored, "the TOTP secret is still stored in plain text"


# L1 (second half): a password change ends API tokens
async def test_v_l1_a_password_change_ends_api_tokens(console: Console) -> None:
    async with console.db.transaction() as session:
        fresh = await users.issue_token(session, "viewer", actor="test")
    client, token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        assert (await client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"})
                ).status_code == 200
        changed = await client.post("/account/password", data={
            "csrf_token": token, "current": PASSWORD, "new": "another long password",
            "repeat": "another long password"})
        assert changed.status_code == 303
        after = await client.get("/api/me", headers={"Authorization": f"Bearer {fresh}"})
    assert after.status_code == 401, f"the token still works after a password change: {after.status_code}"


# L2 (first half): the typed name of a failed sign-in is not in the audit trail
async def test_v_l2_a_typed_name_is_not_audited(console: Console) -> None:
    typed = "Correct-Horse-Battery-Staple-42"
    async with console.client() as client:
        assert (await post_signin(client, name=typed, password="whatever it was")).status_code == 401
        assert (await client.post("/api/login", json={"name": typed, "password": "x"})
                ).status_code == 401
    async with console.db.transaction() as session:
        rows = (await session.execute(select(AuditRow).where(AuditRow.action.like("auth.%")))).scalars().all()
    assert rows, "failed sign-ins are still audited"
    text = json.dumps([[r.actor, r.subject, r.before, r.after, r.reason] for r in rows]).lower()
    assert typed.lower() not in text, "the typed name is in the audit trail"


# L4: the console command does not let uvicorn rewrite the client address from X-Forwarded-For
def test_v_l4_the_console_command_turns_uvicorns_proxy_headers_off(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    import uvicorn
    from typer.testing import CliRunner

    from prevent.cli import app
    from prevent.config import get_settings

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda _app, **kw: seen.update(kw))
    monkeypatch.setenv("PREVENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PREVENT_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("PREVENT_SECRET_KEY", "test-secret-key-not-for-production")
    monkeypatch.delenv("PREVENT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["console"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0 and seen, result.output
    assert seen.get("proxy_headers", True) is False, f"uvicorn.run{seen}: proxy headers believed"


# L12: JSON is not cached
async def test_v_l12_json_is_not_cached(console: Console) -> None:
    client, _ = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        for path in ("/api/registry", "/api/me"):
            response = await client.get(path)
            assert response.status_code == 200
            cache = response.headers.get("cache-control")
            assert cache == "no-store", (path, cache)


# defect 10: after Confirm, a success message and what was left out, on the page and in /audit
async def test_v_defect_10_the_confirmation_says_so_and_what_it_left_out(console: Console) -> None:
    import re

    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        before = (await client.get(f"/alerts/{proposed.alert_id}")).text
        offered = re.findall(r'name="(?:offered_)?site" value="([^"]+)"', before)
        assert SITE in offered
        form = {"csrf_token": token, "revision": str(proposed.revision),
                "offered_site": sorted(set(offered)), "site": [s for s in set(offered) if s != SITE]}
        done = await client.post(f"/alerts/{proposed.alert_id}/confirm", data=form)
        assert done.status_code == 303
        after = (await client.get(done.headers["location"])).text
        audit_page = (await client.get(f"/audit?subject={proposed.alert_id}")).text
    problems = []
    if "Alert confirmed" not in after:
        problems.append("no success message")
    if re.search(r"<h2>Preview", after):
        problems.append("the heading still says Preview")
    if f"sites left out: {SITE}" not in after:
        problems.append("history does not say which site was left out")
    if f"sites left out: {SITE}" not in audit_page:
        problems.append("/audit does not say which site was left out")
    assert not problems, problems


# L8: every input of the finding gets a 4xx, none a 500
async def test_v_l8_bad_inputs_get_4xx_not_500(console: Console) -> None:
    import httpx

    from prevent.storage.tables import WebSubSubscription

    def raw() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=console.app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://console")

    statuses: dict[str, int] = {}
    _c, token = await console.signed_in(Role.DUTY_INSPECTOR)
    await _c.aclose()
    inspector = raw()
    inspector.cookies = _c.cookies
    async with aclosing(inspector):
        statuses["revision NaN"] = (await inspector.post(
            "/api/alerts/x/confirm", content=b'{"revision": NaN}',
            headers={"content-type": "application/json", "x-csrf-token": token})).status_code
        for path in ("/audit?hours=99999999999", "/api/audit?since_hours=1e12"):
            statuses[path] = (await inspector.get(path)).status_code
    _o, otoken = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    await _o.aclose()
    officer = raw()
    officer.cookies = _o.cookies
    async with aclosing(officer):
        latin1 = "site_id,site_name,communities,municipality\ns1,Église Sainte-Thérèse,christian,Lyon\n"
        statuses["latin-1 import"] = (await officer.post(
            "/partners/import", data={"csrf_token": otoken},
            files={"file": ("r.csv", latin1.encode("latin-1"), "text/csv")})).status_code
        for label, source in (("10,000-deep YAML", "id: x\nrules: " + "[" * 10_000 + "]" * 10_000),
                              ("NUL in YAML", "id: x\x00\nname: y\n")):
            statuses[label] = (await officer.post("/playbooks/new", data={
                "csrf_token": otoken, "source": source, "action": "check", "note": "n"})).status_code
    async with console.db.transaction() as session:
        session.add(WebSubSubscription(
            feed_id="f1", callback_id="cb1", hub_url="https://hub.example/", topic="https://t.example/",
            secret="s", state="pending", pending_mode="subscribe", lease_seconds=3600,
            requested_at=utcnow()))
    async with aclosing(raw()) as anonymous:
        statuses["hub.lease_seconds=1e20"] = (await anonymous.get("/websub/cb1", params={
            "hub.mode": "subscribe", "hub.topic": "https://t.example/", "hub.challenge": "c",
            "hub.lease_seconds": "1e20"})).status_code
    not_4xx = {k: v for k, v in statuses.items() if not 400 <= v < 500}
    assert not not_4xx, f"not answered with a 4xx: {not_4xx}"
