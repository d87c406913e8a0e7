"""Issue 22, times in what reaches people outside the console: the acknowledgement page a
partner contact sees on a second click, and the escalation email to the duty roster, show
times in the unit's time zone (PREVENT_TIME_ZONE, default America/Toronto) as the console
does, not in UTC; the escalation links the alert's console page."""

from __future__ import annotations

import re
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from prevent.alerts import lifecycle
from prevent.alerts.escalation import Escalator
from prevent.contracts import utcnow
from prevent.notices.channel import SendResult
from prevent.partners.acklinks import AckLinks
from prevent.platform.storage.tables import NoticeRow
from prevent.users import Principal, Role

from .conftest import Console


async def test_a_second_acknowledgement_says_when_in_the_units_zone(console: Console,
                                                                     settings) -> None:
    created = utcnow() - timedelta(days=1)
    acked = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)  # EDT: four hours behind UTC
    async with console.db.transaction() as session:
        for nid, lang in (("n-twice-en", "en"), ("n-twice-fr", "fr")):
            session.add(NoticeRow(notice_id=nid, alert_id="alr-x", alert_revision=1,
                                  kind="initial", site_id="site-masjid-riverside",
                                  contact_id="contact-riverside-1", channel="email", language=lang,
                                  state="sent", attempts=1, subject="Notice", body="Hello",
                                  created_at=created, updated_at=created, sent_at=created))
    links = AckLinks.from_settings(settings)
    async with aclosing(console.client()) as client:
        for nid, words in (("n-twice-en", "already acknowledged on 2026-07-01 12:30 EDT"),
                           ("n-twice-fr", "déjà été confirmé le 2026-07-01 12:30 EDT")):
            token = links.token(nid, created)
            page = await client.get(f"/ack/{token}")  # opened before the acknowledgement ...
            nonce = re.search(rf'action="/ack/{re.escape(token)}">\s*<input type="hidden" '
                              r'name="nonce" value="([^"]+)"', page.text).group(1)
            async with console.db.transaction() as session:  # ... another click took it meanwhile
                await session.execute(update(NoticeRow).where(NoticeRow.notice_id == nid).values(
                    state="acknowledged", acknowledged_at=acked, acknowledged_via="sms"))
            again = await client.post(f"/ack/{token}", data={"nonce": nonce})
            assert again.status_code == 200
            text = again.text.replace("&#39;", "'")
            assert words in text and "UTC" not in text and "16:30" not in text, text


class _Mail:
    name = "email"

    def __init__(self) -> None:
        self.sent: list = []

    async def send(self, notice) -> SendResult:
        self.sent.append(notice)
        return SendResult.sent("smtp-ref")


async def test_the_escalation_email_gives_the_time_in_the_units_zone(console: Console) -> None:
    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, Principal("duty-inspector", Role.DUTY_INSPECTOR),
            playbook_id="place-of-worship-attack", communities=["muslim"], severity=3,
            title="Exercise: arson at a mosque")
    mail = _Mail()
    escalator = Escalator(console.db, mail, console_url="https://console.example.org")
    await escalator.scan(now=proposed.created_at + timedelta(minutes=16))
    (notice,) = mail.sent
    local = proposed.created_at.astimezone(ZoneInfo("America/Toronto")).strftime("%Y-%m-%d %H:%M %Z")
    assert f"was proposed at {local} and" in notice.text and "UTC" not in notice.text, notice.text
    assert f"https://console.example.org/alerts/{proposed.alert_id}" in notice.text
    assert "/api/alerts/" not in notice.text
