"""Exercises flow end to end marked as such; every action leaves an audit entry."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from lifecycle.support import INSPECTOR, OFFICER, VIEWER, FakeChannel
from notifiers import patrol
from notifiers.centre import CentreNotifier
from prevent import audit, users
from prevent.alerts import lifecycle
from prevent.contracts import AlertStatus
from prevent.notices.templates import NoticeRenderer
from prevent.partners import edits as partners
from prevent.partners.acklinks import AckLinks
from prevent.partners.registry import RosterEntryIn, SiteIn, ZoneIn
from prevent.platform.config import REPO_ROOT
from prevent.platform.storage.tables import NoticeRow, PatrolRow
from prevent.users import PermissionDenied, Role


async def test_an_exercise_is_marked_through_to_the_notice_and_patrol(seeded) -> None:
    async with seeded.transaction() as session:
        alert = await lifecycle.raise_exercise(session, INSPECTOR, playbook_id="place-of-worship-attack",
                                               communities=["muslim"], severity=3,
                                               title="Tabletop: arson at a mosque abroad")
    assert alert.exercise and alert.status is AlertStatus.PROPOSED
    confirmed = await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="confirm",
                                       expected_revision=1, note="exercise go")
    async with seeded.transaction() as session:
        playbook = await lifecycle.playbook_for(session, confirmed)
    channel = FakeChannel()
    notifier = CentreNotifier(seeded, NoticeRenderer(REPO_ROOT / "playbooks" / "templates"),
                              {"email": channel}, AckLinks("k" * 32, "http://127.0.0.1:8000"))
    assert await notifier.handle_alert(confirmed, playbook) >= 1
    async with seeded.transaction() as session:
        assert await patrol.handle_alert(session, confirmed, playbook) == 1
        notices = (await session.execute(select(NoticeRow))).scalars().all()
        assignment = (await session.execute(select(PatrolRow))).scalar_one()
        stats = await lifecycle.statistics(session)
    assert notices and all(n.exercise and n.subject.startswith("[EXERCISE]") for n in notices)
    assert channel.sent[0].exercise and channel.sent[0].subject.startswith("[EXERCISE]")
    assert assignment.payload["exercise"] and assignment.payload["instructions"].startswith("EXERCISE")
    assert stats["alerts"] == {}  # exercises are excluded from statistics


async def test_exercises_need_a_known_playbook_and_a_role(seeded) -> None:
    async with seeded.transaction() as session:
        with pytest.raises(PermissionDenied):
            await lifecycle.raise_exercise(session, VIEWER, playbook_id="place-of-worship-attack",
                                           communities=["muslim"], severity=3, title="t")
        with pytest.raises(lifecycle.alerts.AlertError, match="no playbook 'nope'"):
            await lifecycle.raise_exercise(session, INSPECTOR, playbook_id="nope",
                                           communities=["muslim"], severity=3, title="t")


async def test_every_action_is_audited_with_actor_and_before_after(seeded) -> None:
    async with seeded.transaction() as session:
        await users.add_user(session, "insp.ada", Role.DUTY_INSPECTOR, "correct horse battery",
                             actor="cli")
        token = await users.issue_token(session, "insp.ada", actor="cli")
    async with seeded.transaction() as session:
        assert (await users.principal_for_token(session, token)).role is Role.DUTY_INSPECTOR
        await users.login(session, "insp.ada", "correct horse battery")
    async with seeded.transaction() as session:
        assert await users.login(session, "insp.ada", "wrong password here") is None
    async with seeded.transaction() as session:
        await partners.put_zone(session, OFFICER, ZoneIn(zone_id="zone-east", name="East"))
        await partners.put_site(session, OFFICER, SiteIn(
            site_id="site-new", name="New Centre", communities=["hindu"], municipality="Eastville",
            zone_id="zone-east"))
        await partners.put_roster(session, OFFICER, [RosterEntryIn(
            entry_id="r1", level=1, name="Duty", email="duty@example.org")])
        await partners.delete_site(session, OFFICER, "site-new")
        with pytest.raises(PermissionDenied):
            await partners.put_zone(session, INSPECTOR, ZoneIn(zone_id="z", name="Z"))
    async with seeded.transaction() as session:
        rows = await audit.entries(session)
    by_action = {r.action: r for r in rows}
    for action in ("playbook.apply", "user.add", "user.token_issued", "auth.login", "auth.login_failed",
                   "registry.zone_put", "registry.site_put", "registry.roster_put",
                   "registry.site_delete"):
        assert action in by_action, action
    assert by_action["registry.site_put"].actor == OFFICER.name
    assert by_action["playbook.apply"].after == {"version": 1}
    # the token itself and contact details never reach the audit trail
    text = repr([(r.before, r.after, r.reason) for r in rows])
    assert token not in text and "duty@example.org" not in text
