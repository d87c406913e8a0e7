"""Follow-ups to the engagement officer: unacknowledged high-priority notices after the
playbook's window, and the stand-down review before a patrol plan ends; each once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from notifiers import patrol
from notifiers.centre import OFFICER
from notifiers.scanner import Scanner
from prevent.alerts import states as alerts
from prevent.platform.config import Settings
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import NoticeRow
from prevent.rules.playbooks import store

from .helpers import (
    PLAYBOOK_FILE,
    ScriptedSmtp,
    ago,
    alert,
    contact,
    load_registry,
    notifier,
    playbook,
    registry,
)

OFFICER_EMAIL = "officer@police.example.org"


async def setup(db: Database, settings: Settings, smtp_port: int, *, severity: int, alert_age_hours: float
                ) -> Scanner:
    await load_registry(db, registry([contact(1), contact(2)]))
    a = alert(severity=severity, at=ago(hours=alert_age_hours))
    async with db.transaction() as session:
        await store.apply_sources(session, [(str(PLAYBOOK_FILE), PLAYBOOK_FILE.read_text())], author="t")
        session.add(alerts.to_row(a))
        await patrol.handle_alert(session, a, playbook())
    s = settings.model_copy(update={"smtp_port": smtp_port, "engagement_officer_email": OFFICER_EMAIL})
    n = notifier(db, s, officer_email=OFFICER_EMAIL)
    await n.handle_alert(a, playbook())
    return Scanner(s, db, n, PlaybookHolder())


async def officer_rows(db: Database) -> list[NoticeRow]:
    async with db.transaction() as session:
        return list((await session.execute(select(NoticeRow).where(NoticeRow.contact_id == OFFICER)
                                            .order_by(NoticeRow.kind))).scalars())


async def test_unacknowledged_notices_are_followed_up_once(db: Database, settings: Settings) -> None:
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=3, alert_age_hours=1)
        assert await scanner.scan_once() == []  # sent just now: inside the 120-minute window
        async with db.transaction() as session:
            first = (await session.execute(
                select(NoticeRow).order_by(NoticeRow.contact_id))).scalars().first()
            await session.execute(update(NoticeRow).values(sent_at=ago(minutes=121)))
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == first.notice_id)
                                  .values(acknowledged_at=ago(minutes=5), state="acknowledged"))
        queued = await scanner.scan_once()
        assert await scanner.scan_once() == []  # once
    (row,) = await officer_rows(db)
    assert queued == [row.notice_id] and (row.kind, row.state) == ("ack_followup", "sent")
    mail = smtp.received[-1]
    assert mail["To"] == OFFICER_EMAIL and mail["Subject"].startswith("Not acknowledged after 120 min")
    body = mail.get_body(("plain",)).get_content()
    assert body.count("notice sent") == 1 and "contact-" not in body and "@" not in body.split("Console")[0]


async def test_low_severity_alerts_get_no_ack_follow_up(db: Database, settings: Settings) -> None:
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=2, alert_age_hours=1)
        async with db.transaction() as session:
            await session.execute(update(NoticeRow).values(sent_at=ago(hours=5)))
        assert await scanner.scan_once() == []
    assert await officer_rows(db) == []


async def test_stand_down_review_before_the_plan_ends_once(db: Database, settings: Settings) -> None:
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=2, alert_age_hours=20)
        assert await scanner.scan_once() == []  # ends in 52 h: not yet
        queued = await scanner.scan_once(now=ago(hours=-45))  # 7 h before the end
        assert await scanner.scan_once(now=ago(hours=-46)) == []
    (row,) = await officer_rows(db)
    assert queued == [row.notice_id] and row.kind == "stand_down_review" and row.state == "sent"
    assert "Stand-down review due" in smtp.received[-1]["Subject"]
    body = smtp.received[-1].get_body(("plain",)).get_content()
    assert "Sample Mosque 0 (zone-test)" in body
    assert f"Alert: {settings.public_base_url.rstrip('/')}/alerts/alr_test" in body


async def test_without_an_officer_address_nothing_is_queued(db: Database, settings: Settings) -> None:
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=3, alert_age_hours=70)
        scanner.notifier.officer_email = None
        assert await scanner.scan_once() == []
    assert await officer_rows(db) == []


async def test_an_extended_plan_runs_longer_and_gets_its_own_review(db: Database, settings: Settings) -> None:
    """The review asks to extend the plan: a duty inspector does, once however often the form
    is sent, the change is audited and published, and a new review comes before the new end."""
    from prevent.contracts import PatrolAssignment
    from prevent.platform.storage.tables import AuditRow, OutboxRow, PatrolRow
    from prevent.users import PermissionDenied, Principal, Role

    inspector = Principal("duty-inspector", Role.DUTY_INSPECTOR)
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=2, alert_age_hours=20)
        (first,) = await scanner.scan_once(now=ago(hours=-45))  # the review, 7 h before the end
        async with db.transaction() as session:
            rows = (await session.execute(select(PatrolRow))).scalars().all()
            before = {r.assignment_id: PatrolAssignment.model_validate(r.payload).ends_at for r in rows}
            until = max(before.values())
            with pytest.raises(PermissionDenied):
                await patrol.extend(session, Principal("officer", Role.ENGAGEMENT_OFFICER), "alr_test",
                                    hours=12, note="tension persists")
            for hours, note in ((0, "x"), (169, "x"), (12, "  ")):
                with pytest.raises(patrol.PatrolError):
                    await patrol.extend(session, inspector, "alr_test", hours=hours, note=note)
            extended = await patrol.extend(session, inspector, "alr_test", hours=12, seen_until=until,
                                           note="vigil planned on Friday")
        async with db.transaction() as session:  # the same form sent twice: nothing more
            with pytest.raises(patrol.PatrolConflict):
                await patrol.extend(session, inspector, "alr_test", hours=12, seen_until=until,
                                    note="vigil planned on Friday")
        assert {p.assignment_id: p.ends_at for p in extended} == {
            k: v + timedelta(hours=12) for k, v in before.items()}
        assert await scanner.scan_once(now=ago(hours=-46)) == []  # the new end is 19 h away
        (second,) = await scanner.scan_once(now=ago(hours=-57))  # 7 h before the new end
    assert second != first and len(await officer_rows(db)) == 2
    async with db.transaction() as session:
        stored = {r.assignment_id: PatrolAssignment.model_validate(r.payload).ends_at
                  for r in (await session.execute(select(PatrolRow))).scalars()}
        events = (await session.execute(select(OutboxRow.event_id).where(
            OutboxRow.topic == "prevent.patrols.v1", OutboxRow.subtype == "extended"))).scalars().all()
        entry = (await session.execute(select(AuditRow).where(
            AuditRow.action == "patrol.extended"))).scalar_one()
    assert stored == {p.assignment_id: p.ends_at for p in extended} and len(events) == len(extended)
    assert (entry.actor, entry.subject) == ("duty-inspector", "alr_test")
    assert entry.reason == "vigil planned on Friday"
    assert entry.after["hours"] == 12 and entry.after["patrols"] == len(extended)


async def test_the_follow_up_also_lists_notices_that_never_reached_the_partner(
        db: Database, settings: Settings) -> None:
    """A notice that failed (refused by the server, or undelivered by the SMS gateway) needs
    the same direct contact as one left unacknowledged: it is in the follow-up, without the
    failure text (it may quote an address)."""
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=3, alert_age_hours=1)
        async with db.transaction() as session:
            first, second = (await session.execute(
                select(NoticeRow).where(NoticeRow.contact_id != OFFICER)
                .order_by(NoticeRow.contact_id))).scalars().all()
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == first.notice_id).values(
                state="failed", error="550 <person1@centre1.example.org> unknown",
                created_at=ago(minutes=121)))
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == second.notice_id)
                                  .values(acknowledged_at=ago(minutes=5), state="acknowledged"))
        queued = await scanner.scan_once()
        assert await scanner.scan_once() == []
    (row,) = await officer_rows(db)
    assert queued == [row.notice_id]
    body = smtp.received[-1].get_body(("plain",)).get_content()
    assert (f"email notice could not be delivered ({first.notice_id}; the reason is on the notices "
            "page)") in body
    assert "notice sent" not in body and "@" not in body.split("Console")[0]
