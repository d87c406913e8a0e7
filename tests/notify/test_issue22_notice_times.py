"""Issue 22, times (feature 7 and defect 11, for what is sent): the messages the system
sends show times as the console does, in the unit's time zone (PREVENT_TIME_ZONE, default
America/Toronto) and one format, never in UTC: the engagement officer's follow-up of
unacknowledged notices, the stand-down review, and any time a notice template shows."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from prevent.contracts import PatrolAssignment
from prevent.notices.templates import NoticeRenderer
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import NoticeRow, PatrolRow

from .helpers import ScriptedSmtp, ago
from .test_scanner import officer_rows, setup

TORONTO = ZoneInfo("America/Toronto")


def local(moment: datetime) -> str:
    return moment.astimezone(TORONTO).strftime("%Y-%m-%d %H:%M %Z")


async def test_the_ack_follow_up_gives_the_sending_time_in_the_units_zone(
        db: Database, settings: Settings) -> None:
    assert settings.time_zone == "America/Toronto"
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=3, alert_age_hours=1)
        async with db.transaction() as session:
            await session.execute(update(NoticeRow).values(sent_at=ago(minutes=121)))
            sent_at = (await session.execute(select(NoticeRow.sent_at))).scalars().first()
        assert await scanner.scan_once()
    (row,) = await officer_rows(db)
    assert local(sent_at) in row.body and "UTC" not in row.body, row.body


async def test_the_stand_down_review_gives_the_end_in_the_units_zone(
        db: Database, settings: Settings) -> None:
    with ScriptedSmtp() as smtp:
        scanner = await setup(db, settings, smtp.port, severity=2, alert_age_hours=20)
        assert await scanner.scan_once(now=ago(hours=-45))  # 7 h before the end
        async with db.transaction() as session:
            ends = min(PatrolAssignment.model_validate(r.payload).ends_at for r in (
                await session.execute(select(PatrolRow))).scalars())
    (row,) = await officer_rows(db)
    assert row.subject.startswith(f"Stand-down review due by {local(ends)}: "), row.subject
    assert f"until {local(ends)}" in row.body and "UTC" not in row.subject + row.body, row.body


def test_a_notice_template_shows_times_in_the_units_zone(tmp_path) -> None:
    (tmp_path / "timed.en.j2").write_text(
        "Subject: Patrols until {{ until | localtime }}\n\nRaised {{ raised | localtime }}.\n")
    summer, winter = datetime(2026, 7, 1, 16, 30, tzinfo=UTC), datetime(2026, 1, 15, 3, 5, tzinfo=UTC)
    rendered = NoticeRenderer(tmp_path).render("timed", "en", {"until": summer, "raised": winter})
    assert rendered.subject == "Patrols until 2026-07-01 12:30 EDT"
    assert rendered.text == "Raised 2026-01-14 22:05 EST.\n"
    other = NoticeRenderer(tmp_path, "Europe/Paris").render("timed", "en", {"until": summer,
                                                                             "raised": winter})
    assert other.subject == "Patrols until 2026-07-01 18:30 CEST"
