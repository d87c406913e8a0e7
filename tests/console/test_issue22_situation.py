"""Issue 22: the alert page as the situation picture (notice states per site and contact,
resend, contact name and phone for the alert's sites, a timeline, a map with markers) and
defects 9 (patrol visits visible and recordable), 10 (what a confirmation left out), 11
(times in the unit's zone) and 13 (Partners link, live alert stream)."""

from __future__ import annotations

import json
import re
from contextlib import aclosing
from datetime import timedelta
from html import unescape

from sqlalchemy import select

from prevent.alerts import lifecycle
from prevent.contracts import Scope, utcnow
from prevent.platform.storage.tables import AuditRow, NoticeRow, PatrolRow
from prevent.users import Principal, Role
from prevent.web import situation

from .conftest import Console
from .test_patrol_extend import confirmed_alert_with_patrols

INSPECTOR = Principal("duty-inspector", Role.DUTY_INSPECTOR)
SITE = "site-masjid-riverside"


async def add_notices(console: Console, alert_id: str) -> None:
    now = utcnow()
    common = {"alert_id": alert_id, "alert_revision": 2, "kind": "initial", "site_id": SITE,
              "language": "en", "created_at": now - timedelta(minutes=5)}
    async with console.db.transaction() as session:
        session.add(NoticeRow(notice_id="n-failed", contact_id="contact-riverside-ops",
                              channel="webhook", state="failed", attempts=1, updated_at=now,
                              error="HTTP 410 from the partner's server", **common))
        session.add(NoticeRow(notice_id="n-acked", contact_id="contact-riverside-1",
                              channel="email", state="acknowledged", attempts=1, updated_at=now,
                              sent_at=now - timedelta(minutes=4),
                              acknowledged_at=now - timedelta(minutes=2), acknowledged_via="link",
                              **common))


async def test_the_alert_page_shows_states_contacts_timeline_and_map(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    await add_notices(console, alert_id)
    client, _token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = await client.get(f"/alerts/{alert_id}")
    assert page.status_code == 200
    html = page.text
    row = re.search(r'<tr data-site-id="site-masjid-riverside".*?</tr>', html, re.S).group(0)
    assert 'data-state="failed"' in row  # a failed notice is the most pressing state
    assert "HTTP 410 from the partner&#39;s server" in row
    assert 'action="/notices/n-failed/resend"' in row
    assert "Sam Example" in row and 'href="tel:+1 555 0100"' in row  # need to know: call them
    assert re.search(r'data-notice-id="n-acked" data-state="acknowledged"', row)
    timeline = re.search(r'<ol id="timeline".*?</ol>', html, re.S).group(0)
    for kind in ("decision", "failed", "acknowledged", "patrol", "sent"):
        assert f'data-kind="{kind}"' in timeline, kind
    data = json.loads(unescape(re.search(r'data-map="([^"]*)"', html).group(1)))
    assert {s["id"] for s in data["sites"]} >= {SITE}
    assert data["tiles"].startswith("https://tile.openstreetmap.org/")
    assert "img-src 'self' data: https://tile.openstreetmap.org" in page.headers[
        "content-security-policy"]
    assert '/static/leaflet/leaflet.js' in html


async def test_a_viewer_sees_states_but_not_contact_details(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    await add_notices(console, alert_id)
    client, _token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        html = (await client.get(f"/alerts/{alert_id}")).text
    assert "HTTP 410" in html and "Sam Example" not in html and "555 0100" not in html
    assert "/notices/n-failed/resend" not in html


async def test_resend_requeues_a_failed_notice_once(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    await add_notices(console, alert_id)
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        done = await client.post("/notices/n-failed/resend", data={"csrf_token": token})
        assert done.status_code == 303 and done.headers["location"].startswith(f"/alerts/{alert_id}")
        again = await client.post("/notices/n-failed/resend", data={"csrf_token": token})
        assert again.status_code == 409
        acked = await client.post("/notices/n-acked/resend", data={"csrf_token": token})
        assert acked.status_code == 409
    viewer, vtoken = await console.signed_in(Role.VIEWER)
    async with aclosing(viewer):
        assert (await viewer.post("/notices/n-acked/resend", data={"csrf_token": vtoken})
                ).status_code == 403
    async with console.db.transaction() as session:
        row = await session.get(NoticeRow, "n-failed")
        assert row.state == "queued" and row.next_attempt_at is not None and row.error is None
        trail = (await session.execute(select(AuditRow).where(
            AuditRow.action == "notice.resend_requested"))).scalars().all()
    assert len(trail) == 1 and trail[0].subject == alert_id


async def test_defect_9_a_visit_recorded_by_the_api_shows_on_board_alert_and_sheet(
        console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    async with console.db.transaction() as session:
        plan = (await session.execute(select(PatrolRow).where(PatrolRow.site_id == SITE))
                ).scalars().one()
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        visited = (utcnow() - timedelta(minutes=3)).isoformat()
        api = await client.post(f"/api/patrols/{plan.assignment_id}/visits",
                                json={"visited_at": visited, "note": "all quiet"},
                                headers={"X-CSRF-Token": token})
        assert api.status_code == 201, api.text
        board = (await client.get("/patrols")).text
        row = re.search(rf'<tr data-assignment-id="{plan.assignment_id}".*?</tr>', board, re.S).group(0)
        assert plan.assignment_id in row and "all quiet" in row
        assert re.search(r'<td class="visits">1,', row)
        assert f'action="/patrols/{plan.assignment_id}/visits"' in row  # record one from the board
        assert "100 Sample Street, Riverside" in row  # the street address
        sheet = (await client.get(f"/patrols/zones/{plan.zone_id}/sheet")).text
        assert plan.assignment_id in sheet and "all quiet" in sheet
        assert 'class="address"' in sheet
        page = (await client.get(f"/alerts/{alert_id}")).text
        assert 'data-kind="visit"' in page and "patrol visited" in page and "all quiet" in page
        # and from the board's form, back to the board, audited on the alert
        form = await client.post(f"/patrols/{plan.assignment_id}/visits",
                                 data={"csrf_token": token, "note": "second round", "next": "/patrols"})
        assert form.status_code == 303 and form.headers["location"].startswith("/patrols?recorded=")
        assert "second round" in (await client.get(form.headers["location"])).text
        evil = await client.post(f"/patrols/{plan.assignment_id}/visits",
                                 data={"csrf_token": token, "next": "//evil.example/x"})
        assert evil.headers["location"].startswith("/patrols?")
    viewer, vtoken = await console.signed_in(Role.VIEWER)
    async with aclosing(viewer):
        assert 'action="/patrols/' not in (await viewer.get("/patrols")).text
        refused = await viewer.post(f"/patrols/{plan.assignment_id}/visits",
                                    data={"csrf_token": vtoken})
        assert refused.status_code == 403
    async with console.db.transaction() as session:
        audited = (await session.execute(select(AuditRow).where(
            AuditRow.action == "patrol.visit_recorded"))).scalars().all()
    assert len(audited) == 2 and {a.subject for a in audited} == {alert_id}  # the two form visits


async def test_defect_10_what_a_confirmation_left_out_is_shown_and_the_page_says_so(
        console: Console) -> None:
    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        before = (await client.get(f"/alerts/{proposed.alert_id}")).text
        assert "Preview: who would get what" in before
        offered = re.findall(r'name="offered_site" value="([^"]+)"', before)
        channels = re.findall(r'name="offered_channel" value="([^"]+)"', before)
        assert SITE in offered and "sms" in channels
        kept = [s for s in offered if s != SITE]
        form = {"csrf_token": token, "revision": str(proposed.revision), "offered_site": offered,
                "site": kept, "offered_channel": channels,
                "channel": [c for c in channels if c != "sms"]}
        done = await client.post(f"/alerts/{proposed.alert_id}/confirm", data=form)
        assert done.status_code == 303
        after = (await client.get(done.headers["location"])).text
        audit_page = (await client.get(f"/audit?subject={proposed.alert_id}")).text
    assert "Alert confirmed" in after  # a success message
    assert "Preview: who would get what" not in after and "Response as confirmed" in after
    history = re.search(r'<table id="history">.*?</table>', after, re.S).group(0)
    assert f"sites left out: {SITE}" in history and "channels left out: sms" in history
    assert f"sites left out: {SITE}" in audit_page
    assert re.search(rf'<tr data-site-id="{SITE}"[^>]*class="left-out"', after)


async def test_defect_10_prevent_audit_prints_what_was_left_out(console: Console, capsys, settings,
                                                                monkeypatch) -> None:
    from contextlib import asynccontextmanager

    from prevent.cli import admin
    from prevent.cli.admin import print_audit

    @asynccontextmanager
    async def this_db(_settings):  # the test's own database (and schema)
        yield console.db

    monkeypatch.setattr(admin, "open_db", this_db)

    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    await lifecycle.decide(console.db, INSPECTOR, proposed.alert_id, action="confirm",
                           expected_revision=proposed.revision,
                           scope=Scope(excluded_sites=(SITE,), excluded_patrol_sites=(SITE,)))
    await print_audit(settings.model_copy(update={"database_url": console.db.url}),
                      proposed.alert_id, None)
    out = capsys.readouterr().out
    assert f"sites left out: {SITE}" in out and f"patrols left out: {SITE}" in out


async def test_defect_11_times_in_the_unit_zone_with_utc_on_hover(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    client, _token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        pages = [(await client.get(p)).text for p in (f"/alerts/{alert_id}", "/audit", "/patrols",
                                                      "/?status=all&exercises=1")]
    shown = re.compile(r'<time datetime="[^"]+\+00:00" title="[^"]+ UTC">'
                       r'\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T</time>')
    for html in pages:
        assert shown.search(html), html[:200]
        assert " UTC</time>" not in html and "(UTC)" not in html
    assert '<meta name="time-zone" content="America/Toronto">' in pages[0]


async def test_defect_13_partners_link_only_for_roles_that_may_open_it(console: Console) -> None:
    for role, shown in ((Role.DUTY_INSPECTOR, False), (Role.VIEWER, False),
                        (Role.ENGAGEMENT_OFFICER, True)):
        client, _token = await console.signed_in(role)
        async with aclosing(client):
            html = (await client.get("/")).text
        assert ('href="/partners"' in html) is shown, role


async def test_defect_13_the_alert_stamp_changes_when_another_inspector_decides(
        console: Console) -> None:
    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
        first = await situation.stamp(session, proposed.alert_id)
    await lifecycle.decide(console.db, Principal("other-inspector", Role.DUTY_INSPECTOR),
                           proposed.alert_id, action="confirm", expected_revision=proposed.revision)
    async with console.db.transaction() as session:
        second = await situation.stamp(session, proposed.alert_id)
    assert first != second and second.split(":")[0] == str(proposed.revision + 1)
    client, _token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        fragment = await client.get(f"/alerts/{proposed.alert_id}/situation")
    assert fragment.status_code == 200 and 'id="situation"' in fragment.text
    assert f'data-revision="{proposed.revision + 1}"' in fragment.text


async def test_defect_2_the_inspector_sees_who_reported_a_concern_and_their_number(
        console: Console) -> None:
    from prevent.partners import acks
    from prevent.platform.storage.tables import AlertRow, IncidentRow

    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=2, title="Exercise: concern")
        now = utcnow()
        notice = NoticeRow(notice_id="n-report", alert_id="alr-earlier", alert_revision=1,
                           kind="initial", site_id=SITE, contact_id="contact-riverside-1",
                           channel="email", language="en", state="sent", attempts=1,
                           created_at=now, updated_at=now)
        session.add(notice)
        incident = await acks.report_concern(session, notice, text="A man is filming the door",
                                             urgent=True)
        cluster = (await session.get(AlertRow, proposed.alert_id)).cluster_id
        session.add(IncidentRow(incident_id=incident.incident_id, content_hash=incident.content_hash,
                                feed_id=incident.feed_id, cluster_id=cluster, title=incident.title,
                                published_at=incident.published, received_at=incident.first_seen,
                                payload=incident.model_dump(mode="json"), classification={}))
    client, _token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        html = (await client.get(f"/alerts/{proposed.alert_id}")).text
    box = re.search(r'<div id="reported-by".*?</div>', html, re.S).group(0)
    assert "Riverside Islamic Centre (sample)" in box and "badge urgent" in box
    assert "Sam Example" in box and 'href="tel:+1 555 0100"' in box
    assert "A man is filming the door" in box
    viewer, _vt = await console.signed_in(Role.VIEWER)
    async with aclosing(viewer):
        seen = (await viewer.get(f"/alerts/{proposed.alert_id}")).text
    assert "A man is filming the door" in seen and "555 0100" not in seen


async def test_defect_9_the_ical_location_carries_the_street_address(console: Console) -> None:
    from icalendar import Calendar

    await confirmed_alert_with_patrols(console)
    client, _token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        ics = await client.get("/patrols/zones/zone-north.ics")
    assert ics.status_code == 200
    events = list(Calendar.from_ical(ics.content).walk("VEVENT"))
    assert events and all(str(e["location"]) == "Riverside Islamic Centre (sample), "
                          "100 Sample Street, Riverside" for e in events)
