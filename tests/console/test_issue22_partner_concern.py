"""Issue 22, defect 2: an urgent concern reported by a partner centre (from the
acknowledgement page) becomes an alert that targets the reporting site: its preview names
the site, a notice to its contacts and a patrol there; the Decide box offers them and the
reporter's name and number to call back; confirmed like any other alert, the patrol is
assigned; its escalation after 10 minutes shows on the alert page and in the queue, where
the centre's "urgent" marks it urgent."""

from __future__ import annotations

import re
from contextlib import aclosing
from datetime import timedelta

from sqlalchemy import select

from notifiers import patrol
from prevent.alerts import lifecycle
from prevent.alerts.escalation import Escalator
from prevent.classification import Classifier
from prevent.contracts import INCIDENTS, GlobalIncident, utcnow
from prevent.notices.channel import SendResult
from prevent.partners.acklinks import AckLinks
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.tables import NoticeRow, OutboxRow, PatrolRow
from prevent.rules.stage import process_incident
from prevent.users import Principal, Role

from .conftest import Console

SITE = "site-masjid-riverside"
INSPECTOR = Principal("duty-inspector", Role.DUTY_INSPECTOR)


def nonce(page: str, form: str) -> str:
    match = re.search(rf'action="[^"]*{form}"[^>]*>\s*<input type="hidden" name="nonce" '
                      r'value="([^"]+)"', page)
    assert match, f"no nonce for {form}"
    return match.group(1)


async def reported_concern(console: Console, settings, text: str = "A man is filming our door",
                           ) -> str:
    """A contact of the Riverside centre reports an urgent concern from the page of an
    earlier notice; the rules stage takes the incident. Returns the alert's id."""
    now = utcnow()
    async with console.db.transaction() as session:
        session.add(NoticeRow(notice_id="n-earlier", alert_id="alr-earlier", alert_revision=1,
                              kind="initial", site_id=SITE, contact_id="contact-riverside-1",
                              channel="email", language="en", state="sent", attempts=1,
                              subject="Advisory", body="...", created_at=now, updated_at=now,
                              sent_at=now))
    token = AckLinks.from_settings(settings).token("n-earlier", now)
    async with aclosing(console.client()) as client:
        page = await client.get(f"/ack/{token}")
        sent = await client.post(f"/ack/{token}/report", data={
            "nonce": nonce(page.text, "/report"), "text": text, "urgent": "yes"})
    assert sent.status_code == 200, sent.text
    return await partner_report_alert(console, settings)


async def partner_report_alert(console: Console, settings) -> str:
    """The rules stage takes the reported concern (the incident staged in the outbox) and
    raises the partner-report alert; returns its id."""
    async with console.db.transaction() as session:
        (event,) = (await session.execute(select(OutboxRow).where(
            OutboxRow.topic == INCIDENTS.name))).scalars().all()
    incident = GlobalIncident.model_validate_json(event.payload)
    holder = PlaybookHolder()
    await holder.reload(console.db)
    async with console.db.transaction() as session:
        outcome = await process_incident(session, incident,
                                         Classifier.from_dir(settings.playbooks_dir),
                                         holder.compiled, now=incident.published)
    (alert,) = [a for a in outcome.alerts if a.playbook_id == "partner-report"]
    assert alert.status.value == "proposed" and alert.severity >= 2
    return alert.alert_id


async def test_defect_2_a_partner_concern_targets_the_reporting_site(console: Console,
                                                                    settings) -> None:
    alert_id = await reported_concern(console, settings)
    async with console.db.transaction() as session:
        alert = await lifecycle.alerts.get(session, alert_id)
        preview = await lifecycle.preview(session, alert)
    # The reporting site only (not every Muslim site): a notice to its contacts, a patrol there.
    assert preview["sites"] == [SITE]
    assert {(r["contact_id"], r["channel"]) for r in preview["recipients"]} == {
        ("contact-riverside-1", "email"), ("contact-riverside-1", "sms")}
    assert {r["template"] for r in preview["recipients"]} == {"partner_report"}
    assert [(p["site_id"], p["zone_id"], p["priority"]) for p in preview["patrols"]] == [
        (SITE, "zone-north", "high")]

    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        html = (await client.get(f"/alerts/{alert_id}")).text
        assert "Nobody would be notified" not in html and "No patrols would be assigned" not in html
        row = re.search(rf'<tr data-site-id="{SITE}".*?</tr>', html, re.S).group(0)
        sam, desk = (re.search(rf'data-contact-id="{c}".*?</div>', row, re.S).group(0)
                     for c in ("contact-riverside-1", "contact-riverside-ops"))
        assert "to notify on confirmation" in sam  # email and SMS: the playbook's channels
        assert "not notified by this playbook" in desk  # its webhook is not one of them
        form = re.search(r'<form[^>]*id="confirm-form".*?</form>', html, re.S).group(0)
        # The Decide box: the reporting site, its patrol, and whom to call back.
        assert f'id="site-{SITE}"' in form and f'id="patrol-{SITE}"' in form
        assert "Riverside Islamic Centre (sample)" in form
        call_back = re.search(r'<div id="call-back".*?</div>', form, re.S).group(0)
        assert "Sam Example" in call_back and 'href="tel:+1 555 0100"' in call_back
        revision = re.search(r'name="revision" value="(\d+)"', form).group(1)
        confirmed = await client.post(f"/alerts/{alert_id}/confirm", data={
            "csrf_token": token, "revision": revision, "offered_site": SITE, "site": SITE,
            "offered_channel": ["email", "sms"], "channel": ["email", "sms"],
            "offered_patrol": SITE, "patrol": SITE})
    assert confirmed.status_code == 303, confirmed.text
    # Confirmed like any other alert: the patrol notifier sends a patrol to the reporting site.
    holder = PlaybookHolder()
    await holder.reload(console.db)
    async with console.db.transaction() as session:
        after = await lifecycle.alerts.get(session, alert_id)
        playbook = await holder.version(console.db, after.playbook_id, after.playbook_version)
        assert await patrol.handle_alert(session, after, playbook) == 1
        plans = (await session.execute(select(PatrolRow).where(
            PatrolRow.alert_id == alert_id))).scalars().all()
    assert [(p.site_id, p.status) for p in plans] == [(SITE, "assigned")]


class _Mail:
    name = "email"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, notice) -> SendResult:
        self.sent.append(notice.subject)
        return SendResult.sent("smtp-ref")


async def test_defect_2_the_concerns_escalation_shows_on_its_page_and_in_the_queue(
        console: Console, settings) -> None:
    alert_id = await reported_concern(console, settings)
    async with console.db.transaction() as session:
        alert = await lifecycle.alerts.get(session, alert_id)
    client, _token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        before = (await client.get(f"/alerts/{alert_id}")).text
        line = re.search(r'<p class="summary-line" id="escalation">.*?</p>', before, re.S).group(0)
        assert 'data-level="1" data-state="due"' in line and "due" in line
        mail = _Mail()
        result = await Escalator(console.db, mail).scan(now=alert.created_at + timedelta(minutes=11))
        assert result.escalated == 1 and len(mail.sent) == 1
        page = (await client.get(f"/alerts/{alert_id}")).text
        fragment = (await client.get(f"/alerts/{alert_id}/situation")).text  # the live part
        queue = (await client.get("/")).text
    for html in (page, fragment):
        line = re.search(r'<p class="summary-line" id="escalation">.*?</p>', html, re.S).group(0)
        assert 'data-level="1" data-state="fired"' in line and "escalated" in line
        assert 'data-level="2" data-state="due"' in line
        timeline = re.search(r'<ol id="timeline".*?</ol>', html, re.S).group(0)
        assert 'data-kind="escalation"' in timeline and "escalated to the duty roster" in timeline
    row = re.search(rf'<tr data-alert-id="{alert_id}".*?</tr>', queue, re.S).group(0)
    assert "badge escalated" in row
    assert "badge urgent" in row  # reported as urgent by the centre, though of severity 2
