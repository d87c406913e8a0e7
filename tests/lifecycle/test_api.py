"""The /api/ surface: authentication, role checks, decisions, silences, registry edits."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pyotp
import pytest

from lifecycle.support import make_alert, open_alert
from prevent import users
from prevent.contracts import utcnow
from prevent.platform.storage.tables import UserRow
from prevent.users import Role
from prevent.web.app import ConsoleState, create_app

PASSWORD = "a long enough password"


@pytest.fixture
async def api(seeded):
    kicks: list[int] = []

    @asynccontextmanager
    async def no_state(_app):  # state is set below (ASGITransport has no lifespan)
        yield None

    app = create_app(no_state)
    app.state.console = ConsoleState(db=seeded, kick=lambda: kicks.append(1))
    tokens = {}
    async with seeded.transaction() as session:
        for name, role in (("ada", Role.DUTY_INSPECTOR), ("bo", Role.DUTY_INSPECTOR),
                           ("cy", Role.VIEWER), ("dee", Role.ENGAGEMENT_OFFICER), ("eve", Role.ADMIN)):
            await users.add_user(session, name, role, PASSWORD, actor="test")
            tokens[name] = await users.issue_token(session, name, actor="test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        client.tokens = tokens  # type: ignore[attr-defined]
        client.kicks = kicks  # type: ignore[attr-defined]
        yield client


def auth(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.tokens[name]}"}  # type: ignore[attr-defined]


async def test_authentication_is_required_and_tokens_resolve(api) -> None:
    assert (await api.get("/api/alerts")).status_code == 401
    assert (await api.get("/api/alerts", headers={"Authorization": "Bearer nope"})).status_code == 401
    me = await api.get("/api/me", headers=auth(api, "cy"))
    assert me.json() == {"name": "cy", "role": "viewer"}
    bad = await api.post("/api/login", json={"name": "cy", "password": "wrong password!"})
    assert bad.status_code == 401
    good = await api.post("/api/login", json={"name": " CY ", "password": PASSWORD})  # as stored
    token = good.json()["token"]
    assert (await api.get("/api/me", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    trail = (await api.get("/api/audit", params={"subject": "user:cy"}, headers=auth(api, "cy"))).json()
    assert [e["action"] for e in trail][-3:] == ["auth.login_failed", "auth.login", "user.token_issued"]


async def test_confirm_dismiss_close_through_the_api(api, seeded) -> None:
    a = await open_alert(seeded, make_alert(cluster="api-1"))
    b = await open_alert(seeded, make_alert(cluster="api-2"))
    listed = (await api.get("/api/alerts", params={"status": "proposed"}, headers=auth(api, "cy"))).json()
    assert {x["alert_id"] for x in listed} == {a.alert_id, b.alert_id}
    detail = (await api.get(f"/api/alerts/{a.alert_id}", headers=auth(api, "cy"))).json()
    assert detail["preview"]["sites"] == ["site-masjid-riverside"]
    assert {t["kind"] for t in detail["timers"]} == {"escalate", "expire"}
    assert "@" not in repr(detail["preview"])  # ids and names, never addresses

    denied = await api.post(f"/api/alerts/{a.alert_id}/confirm", json={"revision": 1},
                            headers=auth(api, "cy"))
    assert denied.status_code == 403 and "may not confirm" in denied.json()["detail"]
    ok = await api.post(f"/api/alerts/{a.alert_id}/confirm", headers=auth(api, "ada"), json={
        "revision": 1, "note": "go", "scope": {"excluded_patrol_sites": ["site-masjid-riverside"]}})
    assert ok.status_code == 200 and ok.json()["status"] == "confirmed" and api.kicks
    late = await api.post(f"/api/alerts/{a.alert_id}/confirm", json={"revision": 1},
                          headers=auth(api, "bo"))
    assert late.status_code == 409 and late.json()["detail"]["decided_by"] == "ada"

    no_note = await api.post(f"/api/alerts/{b.alert_id}/dismiss", headers=auth(api, "ada"),
                             json={"revision": 1, "disposition": "duplicate", "note": ""})
    assert no_note.status_code == 422
    no_reason = await api.post(f"/api/alerts/{b.alert_id}/dismiss", headers=auth(api, "ada"),
                               json={"revision": 1, "disposition": "because", "note": "x"})
    assert no_reason.status_code == 422
    dismissed = await api.post(f"/api/alerts/{b.alert_id}/dismiss", headers=auth(api, "ada"),
                               json={"revision": 1, "disposition": "duplicate", "note": "same event"})
    assert dismissed.json()["status"] == "dismissed"
    illegal = await api.post(f"/api/alerts/{b.alert_id}/close", json={"revision": 2},
                             headers=auth(api, "ada"))
    assert illegal.status_code == 409 and "cannot close" in illegal.json()["detail"]
    closed = await api.post(f"/api/alerts/{a.alert_id}/close", json={"revision": 2, "note": "calm"},
                            headers=auth(api, "ada"))
    assert closed.json()["status"] == "closed"
    assert (await api.get("/api/alerts/alr_missing", headers=auth(api, "cy"))).status_code == 404


async def test_silences_crud_and_exercises(api) -> None:
    body = {"matchers": {"keyword": "hoax"}, "ends_at": (utcnow() + timedelta(hours=1)).isoformat(),
            "comment": "debunked hoax"}
    assert (await api.post("/api/silences", json=body, headers=auth(api, "dee"))).status_code == 403
    created = await api.post("/api/silences", json=body, headers=auth(api, "ada"))
    assert created.status_code == 201 and created.json()["active"]
    silence_id = created.json()["silence_id"]
    active = (await api.get("/api/silences", params={"active": True}, headers=auth(api, "cy"))).json()
    assert [s["silence_id"] for s in active] == [silence_id]
    ended = await api.delete(f"/api/silences/{silence_id}", headers=auth(api, "ada"))
    assert ended.json()["active"] is False and ended.json()["expired_by"] == "ada"
    assert (await api.get("/api/silences", params={"active": True}, headers=auth(api, "cy"))).json() == []

    exercise = await api.post("/api/exercises", headers=auth(api, "dee"), json={
        "playbook": "place-of-worship-attack", "communities": ["jewish"], "severity": 3,
        "title": "Drill: synagogue arson"})
    assert exercise.status_code == 201 and exercise.json()["exercise"] is True
    stats = (await api.get("/api/stats", headers=auth(api, "cy"))).json()
    assert stats["alerts"] == {}


async def test_registry_edits_need_the_engagement_role(api) -> None:
    site = {"site_id": "site-api", "name": "API Centre", "communities": ["hindu"],
            "municipality": "Eastville", "zone_id": "zone-north",
            "contacts": [{"contact_id": "c-api", "name": "Pat", "email": "pat@example.org",
                          "consent": True}]}
    assert (await api.put("/api/registry/sites/site-api", json=site,
                          headers=auth(api, "ada"))).status_code == 403
    assert (await api.get("/api/registry", headers=auth(api, "cy"))).status_code == 403
    put = await api.put("/api/registry/sites/site-api", json=site, headers=auth(api, "dee"))
    assert put.status_code == 200
    bad_zone = dict(site, zone_id="zone-nowhere")
    rejected = await api.put("/api/registry/sites/site-api", json=bad_zone, headers=auth(api, "dee"))
    assert rejected.status_code == 422 and "unknown patrol zone" in rejected.json()["detail"][0]
    registry = (await api.get("/api/registry", headers=auth(api, "dee"))).json()
    assert "site-api" in [s["site_id"] for s in registry["sites"]]
    assert (await api.delete("/api/registry/sites/site-api", headers=auth(api, "dee"))).status_code == 200
    roster = [{"entry_id": "r-1", "level": 1, "name": "Duty", "email": "duty@example.org"}]
    assert (await api.put("/api/registry/roster", json=roster, headers=auth(api, "dee"))).json() == {
        "entries": 1}
    assert (await api.get("/api/users", headers=auth(api, "dee"))).status_code == 403
    added = await api.post("/api/users", headers=auth(api, "eve"),
                           json={"name": "fay", "role": "viewer", "password": f" {PASSWORD} "})
    assert added.status_code == 201
    # the password is taken as typed, spaces and all (the console's sign-in form does the same)
    assert (await api.post("/api/login", json={"name": "fay", "password": PASSWORD})).status_code == 401
    assert (await api.post("/api/login", json={"name": "fay", "password": f" {PASSWORD} "})
            ).status_code == 200


async def test_api_login_asks_what_the_console_asks(api, seeded) -> None:
    """No weaker door: an administrator needs the second factor for a token too, and a user
    with one enrolled gives its code."""
    refused = await api.post("/api/login", json={"name": "eve", "password": PASSWORD})
    assert refused.status_code == 401 and "second factor" in refused.json()["detail"]
    secret = pyotp.random_base32()
    async with seeded.transaction() as session:
        (await session.get(UserRow, "eve")).totp_secret = secret
    no_code = await api.post("/api/login", json={"name": "eve", "password": PASSWORD})
    wrong_code = await api.post("/api/login", json={"name": "eve", "password": PASSWORD,
                                                    "code": "000000" if pyotp.TOTP(secret).now() != "000000"
                                                    else "111111"})
    good = await api.post("/api/login", json={"name": "eve", "password": PASSWORD,
                                              "code": pyotp.TOTP(secret).now()})
    assert no_code.status_code == wrong_code.status_code == 401
    assert good.status_code == 200 and good.json()["role"] == "admin"


async def test_an_administrator_changes_and_disables_users_through_the_api(api) -> None:
    assert (await api.patch("/api/users/cy", json={"active": False},
                            headers=auth(api, "dee"))).status_code == 403
    role = await api.patch("/api/users/cy", json={"role": "duty_inspector"}, headers=auth(api, "eve"))
    assert role.json() == {"name": "cy", "changed": True}
    # A role change ends the user's tokens (issue 23, M4): they sign in again under the new role.
    assert (await api.get("/api/me", headers=auth(api, "cy"))).status_code == 401
    off = await api.patch("/api/users/cy", json={"active": False}, headers=auth(api, "eve"))
    assert off.json() == {"name": "cy", "changed": True}
    listed = {u["name"]: u for u in (await api.get("/api/users", headers=auth(api, "eve"))).json()}
    assert listed["cy"] == {"name": "cy", "role": "duty_inspector", "disabled": True,
                            "second_factor": False}
    myself = await api.patch("/api/users/eve", json={"active": False}, headers=auth(api, "eve"))
    assert myself.status_code == 422 and "ask another administrator" in myself.json()["detail"]
    extra = await api.patch("/api/users/cy", json={"admin": True}, headers=auth(api, "eve"))
    assert extra.status_code == 422  # unknown fields are refused, not ignored


async def test_patrols_are_extended_through_the_api(api, seeded) -> None:
    from notifiers import patrol
    from prevent.alerts import states as alerts
    from prevent.platform.runtime import PlaybookHolder

    a = await open_alert(seeded, make_alert(cluster="api-patrol"))
    ok = await api.post(f"/api/alerts/{a.alert_id}/confirm", json={"revision": 1}, headers=auth(api, "ada"))
    holder = PlaybookHolder()
    await holder.reload(seeded)
    async with seeded.transaction() as session:
        confirmed = await alerts.get(session, a.alert_id)
        playbook = await holder.version(seeded, confirmed.playbook_id, confirmed.playbook_version)
        assert ok.status_code == 200 and await patrol.handle_alert(session, confirmed, playbook) == 1
    url = f"/api/alerts/{a.alert_id}/patrols/extend"
    refused = await api.post(url, json={"hours": 6, "note": "vigil"}, headers=auth(api, "dee"))
    too_long = await api.post(url, json={"hours": 500, "note": "vigil"}, headers=auth(api, "ada"))
    done = await api.post(url, json={"hours": 6, "note": "vigil"}, headers=auth(api, "ada"))
    assert refused.status_code == 403 and too_long.status_code == 422 and done.status_code == 200
    (plan,) = done.json()["patrols"]
    stale = await api.post(url, headers=auth(api, "ada"), json={
        "hours": 6, "note": "vigil", "until": (utcnow() - timedelta(days=1)).isoformat()})
    assert stale.status_code == 409
    again = await api.post(url, headers=auth(api, "ada"), json={
        "hours": 6, "note": "vigil", "until": plan["ends_at"]})
    assert again.status_code == 200 and again.json()["patrols"][0]["ends_at"] > plan["ends_at"]
