"""What the `prevent users` and `prevent alerts` commands do (kept out of cli.py)."""

from __future__ import annotations

from prevent import users
from prevent.alerts import lifecycle
from prevent.cli.admin import open_db
from prevent.contracts import Alert
from prevent.platform.config import Settings

# Whoever runs the CLI on the server already holds the database credentials; the
# commands act as that local operator, named in the audit trail by --actor.


async def add_user(settings: Settings, name: str, role: users.Role, password: str, actor: str) -> None:
    async with open_db(settings) as db, db.transaction() as session:
        await users.add_user(session, name, role, password, actor=actor)


async def list_users(settings: Settings, actor: str) -> list[dict[str, object]]:
    async with open_db(settings) as db, db.transaction() as session:
        return await users.list_users(session, users.Principal(actor, users.Role.ADMIN))


async def change_user(settings: Settings, name: str, actor: str, *, role: users.Role | None = None,
                      active: bool | None = None) -> bool:
    """The CLI runs on the server as an administrator named ``actor``."""
    async with open_db(settings) as db, db.transaction() as session:
        return await users.change_user(session, users.Principal(actor, users.Role.ADMIN), name,
                                       role=role, active=active)


async def new_token(settings: Settings, name: str, actor: str) -> str:
    async with open_db(settings) as db, db.transaction() as session:
        return await users.issue_token(session, name, actor=actor)


async def raise_exercise(settings: Settings, actor: str, playbook: str, communities: list[str],
                         severity: int, title: str, summary: str) -> Alert:
    principal = users.Principal(actor, users.Role.DUTY_INSPECTOR)
    async with open_db(settings) as db, db.transaction() as session:
        return await lifecycle.raise_exercise(session, principal, playbook_id=playbook,
                                              communities=communities, severity=severity,
                                              title=title, summary=summary)


async def list_alerts(settings: Settings, status: list[str]) -> list[Alert]:
    async with open_db(settings) as db, db.transaction() as session:
        return await lifecycle.list_alerts(session, status=status)
