"""Users managed in the browser by an administrator: add with field-level errors, change a
role, disable (sessions end, tokens revoked, at once) and re-enable; every change audited,
nobody changes their own account, administrators only."""

from __future__ import annotations

from contextlib import aclosing

from sqlalchemy import select

from prevent import users
from prevent.platform.storage.tables import AuditRow, UserRow
from prevent.users import Role

from .conftest import PASSWORD, Console, post_signin


async def user_row(console: Console, name: str) -> UserRow | None:
    async with console.db.transaction() as session:
        return await session.get(UserRow, name)


async def trail(console: Console) -> list[tuple[str, str, dict | None]]:
    async with console.db.transaction() as session:
        rows = (await session.execute(select(AuditRow).where(AuditRow.action.like("user.%"),
                                                             AuditRow.actor == "admin")
                                      .order_by(AuditRow.at))).scalars()
        return [(r.action, r.subject, r.after) for r in rows]


async def test_an_administrator_adds_a_user_with_errors_shown_by_field(console: Console) -> None:
    client, token = await console.signed_in(Role.ADMIN)
    async with aclosing(client):
        page = await client.get("/users")
        assert page.status_code == 200 and '<a href="/users" aria-current="page">Users</a>' in page.text
        assert "<td>viewer</td>" in page.text and "<td>admin</td><td>admin</td>" in page.text

        bad = await client.post("/users", data={"csrf_token": token, "name": "Bad Name",
                                                "role": "viewer", "password": PASSWORD})
        assert bad.status_code == 422 and 'aria-describedby="u-name-error"' in bad.text
        assert PASSWORD not in bad.text  # a password is never sent back
        short = await client.post("/users", data={"csrf_token": token, "name": "new-officer",
                                                  "role": "engagement_officer", "password": "short"})
        assert short.status_code == 422 and 'id="u-password-error"' in short.text
        assert 'value="new-officer"' in short.text and await user_row(console, "new-officer") is None

        added = await client.post("/users", data={"csrf_token": token, "name": "new-officer",
                                                  "role": "engagement_officer", "password": PASSWORD})
        assert added.status_code == 303
        assert "User new-officer added." in (await client.get(added.headers["location"])).text
        spaced = await client.post("/users", data={"csrf_token": token, "name": " spaced ",
                                                   "role": "viewer", "password": " kept as typed  "})
        assert spaced.status_code == 303
    async with aclosing(console.client()) as newcomer:  # the password works exactly as typed
        assert (await post_signin(newcomer, **{"name": "spaced", "password": "kept as typed"})
                ).status_code == 401
        assert (await post_signin(newcomer, **{"name": "spaced", "password": " kept as typed  "})
                ).status_code == 303
    row = await user_row(console, "new-officer")
    assert row is not None and row.role == "engagement_officer" and not row.disabled
    assert await trail(console) == [("user.add", "user:new-officer", {"role": "engagement_officer"}),
                                    ("user.add", "user:spaced", {"role": "viewer"})]


async def test_a_disabled_user_loses_sessions_and_tokens_at_once(console: Console) -> None:
    inspector, _ = await console.signed_in(Role.DUTY_INSPECTOR)
    async with console.db.transaction() as session:
        api_token = await users.issue_token(session, "duty-inspector", actor="test")
    bearer = {"Authorization": f"Bearer {api_token}"}
    admin, token = await console.signed_in(Role.ADMIN)
    async with aclosing(admin), aclosing(inspector):
        assert (await inspector.get("/api/me")).status_code == 200
        assert (await inspector.get("/api/me", headers=bearer)).status_code == 200

        disabled = await admin.post("/users/duty-inspector", data={"csrf_token": token, "active": "no"})
        assert disabled.status_code == 303
        assert (await inspector.get("/api/me")).status_code == 401
        assert (await inspector.get("/api/me", headers=bearer)).status_code == 401
        refused = await post_signin(inspector, **{"name": "duty-inspector", "password": PASSWORD})
        assert refused.status_code == 401

        enabled = await admin.post("/users/duty-inspector", data={"csrf_token": token, "active": "yes"})
        assert enabled.status_code == 303
        # neither the old session nor the old token comes back; signing in again works
        assert (await inspector.get("/api/me")).status_code == 401
        assert (await inspector.get("/api/me", headers=bearer)).status_code == 401
        again = await post_signin(inspector, **{"name": "duty-inspector", "password": PASSWORD})
        assert again.status_code == 303
    changes = [after for action, _, after in await trail(console) if action == "user.change"]
    assert changes == [{"role": "duty_inspector", "disabled": True},
                       {"role": "duty_inspector", "disabled": False}]


async def test_a_role_change_ends_the_session_and_applies_at_the_next_sign_in(console: Console
                                                                                ) -> None:
    viewer, _viewer_token = await console.signed_in(Role.VIEWER)
    admin, token = await console.signed_in(Role.ADMIN)
    async with aclosing(admin), aclosing(viewer):
        assert (await viewer.get("/partners")).status_code == 403
        changed = await admin.post("/users/viewer", data={"csrf_token": token,
                                                          "role": "engagement_officer"})
        assert changed.status_code == 303
        assert (await viewer.get("/partners")).status_code == 401  # the old session ended
        viewer.cookies.clear()
        assert (await post_signin(viewer, name="viewer", password=PASSWORD)).status_code == 303
        assert (await viewer.get("/partners")).status_code == 200
        same = await admin.post("/users/viewer", data={"csrf_token": token,
                                                       "role": "engagement_officer"})
        assert same.status_code == 303  # nothing changed, nothing audited
        unknown = await admin.post("/users/viewer", data={"csrf_token": token, "role": "superuser"})
        assert unknown.status_code == 422 and "is not one of" in unknown.text
        myself = await admin.post("/users/admin", data={"csrf_token": token, "active": "no"})
        assert myself.status_code == 422 and "ask another administrator" in myself.text
        nobody = await admin.post("/users/nobody", data={"csrf_token": token, "active": "no"})
        assert nobody.status_code == 422 and "no user nobody" in nobody.text
    assert (await user_row(console, "admin")).disabled is False
    assert [a for a in await trail(console) if a[0] == "user.change"] == [
        ("user.change", "user:viewer", {"role": "engagement_officer", "disabled": False})]


async def test_only_administrators_manage_users(console: Console) -> None:
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        home = await client.get("/")
        assert 'href="/users"' not in home.text  # not offered in the navigation
        assert (await client.get("/users")).status_code == 403
        added = await client.post("/users", data={"csrf_token": token, "name": "sneaky",
                                                  "role": "admin", "password": PASSWORD})
        assert added.status_code == 403
        disabled = await client.post("/users/viewer", data={"csrf_token": token, "active": "no"})
        assert disabled.status_code == 403
    assert await user_row(console, "sneaky") is None
    assert (await user_row(console, "viewer")).disabled is False


async def test_promotion_to_admin_ends_sessions_and_tokens_made_without_a_second_factor(
        console: Console) -> None:
    """M4: a session or token made without TOTP must not reach admin pages after a promotion."""
    inspector, _ = await console.signed_in(Role.DUTY_INSPECTOR)
    async with console.db.transaction() as session:
        api_token = await users.issue_token(session, "duty-inspector", actor="test")
    bearer = {"Authorization": f"Bearer {api_token}"}
    admin, token = await console.signed_in(Role.ADMIN)
    async with aclosing(admin), aclosing(inspector):
        assert (await inspector.get("/api/me", headers=bearer)).status_code == 200
        promoted = await admin.post("/users/duty-inspector", data={"csrf_token": token,
                                                                   "role": "admin"})
        assert promoted.status_code == 303
        assert (await inspector.get("/users")).status_code == 401
        assert (await inspector.get("/api/users")).status_code == 401
        assert (await inspector.get("/api/users", headers=bearer)).status_code == 401
        # Signing in again as an administrator asks for the second factor.
        inspector.cookies.clear()
        again = await post_signin(inspector, name="duty-inspector", password=PASSWORD)
        assert again.status_code == 401 and "second factor" in again.text
