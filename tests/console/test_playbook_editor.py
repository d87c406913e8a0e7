"""The playbook pages and editor: stored versions are re-validated, a draft is validated (with
line numbers) and backtested before it is saved, a save needs a note and an editor's role, and
a saved version is what the rules consumer's playbook holder loads next."""

from __future__ import annotations

import re
from contextlib import aclosing
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from prevent.contracts import utcnow
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.tables import AuditRow, IncidentRow, OutboxRow, PlaybookVersion
from prevent.rules.playbooks import store
from prevent.users import Role

from .conftest import Console

PID = "place-of-worship-attack"


async def stored_source(console: Console) -> tuple[str, int]:
    async with console.db.transaction() as session:
        row = next(r for r in await store.latest_versions(session) if r.playbook_id == PID)
    return row.source, row.version


async def version_count(console: Console) -> int:
    async with console.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(PlaybookVersion))).scalar())


async def add_incident(console: Console, incident_id: str, title: str, *, days_ago: float = 1) -> None:
    published = utcnow() - timedelta(days=days_ago)
    async with console.db.transaction() as session:
        session.add(IncidentRow(
            incident_id=incident_id, content_hash="h", feed_id="test", cluster_id=None, title=title,
            published_at=published, received_at=published, classification=None,
            payload={"incident_id": incident_id, "title": title, "summary": "",
                     "published": published.isoformat(), "location": {"country": "FR"}}))


async def test_playbooks_page_validates_stored_versions(console: Console) -> None:
    async with console.db.transaction() as session:  # a version the current schema rejects
        session.add(PlaybookVersion(playbook_id="stale", version=1, author="old", note="",
                                    created_at=utcnow(),
                                    source="id: stale\ntitle: t\nowner: o\nmatch: {}\nresponse: {}\n"))
    client, _ = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        page = await client.get("/playbooks")
    assert page.status_code == 200
    assert "community-engagement-unit" in page.text  # owner
    row = re.search(r"<tr>\s*<td><a href=\"/playbooks/stale\">.*?</tr>", page.text, re.DOTALL)
    assert row and "invalid" in row.group(0) and "line 4: match.communities" in row.group(0)
    assert page.text.count('badge valid') >= 6


async def test_backtest_of_the_stored_playbooks(console: Console) -> None:
    await add_incident(console, "i-mosque", "Arson attack on a mosque injures worshippers")
    await add_incident(console, "i-old", "Arson attack on a mosque long ago", days_ago=45)
    client, _ = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = await client.get("/playbooks/backtest")
    assert page.status_code == 200
    assert "over the 1 incidents" in " ".join(page.text.split())
    assert "Arson attack on a mosque injures worshippers" in page.text
    assert "long ago" not in page.text


async def test_an_invalid_draft_shows_line_numbers_and_stores_nothing(console: Console) -> None:
    source, _ = await stored_source(console)
    draft = source.replace("min_severity: 2", "min_severity: 9").replace("max_age_hours: 72",
                                                                           "max_age_hourz: 72")
    line = next(n for n, text in enumerate(draft.splitlines(), 1) if "min_severity: 9" in text)
    before = await version_count(console)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        for action in ("check", "save"):
            page = await client.post(f"/playbooks/{PID}/edit", data={
                "csrf_token": token, "source": draft, "note": "tighten", "action": action})
            assert page.status_code == 422, action
            assert f"line {line}</a>: match.min_severity" in page.text
            assert "match.max_age_hourz: Extra inputs are not permitted" in page.text
            assert "min_severity: 9" in page.text  # the draft is kept for fixing
        syntax = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": "id: x\n  bad: [", "action": "check"})
        assert syntax.status_code == 422 and "YAML syntax error" in syntax.text
        renamed = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": source.replace(f"id: {PID}", "id: other-id"),
            "note": "x", "action": "save"})
        assert renamed.status_code == 422 and "differs from the playbook being edited" in renamed.text
    assert await version_count(console) == before


async def test_a_valid_draft_is_backtested_then_saved_as_the_next_version(console: Console) -> None:
    await add_incident(console, "i-mosque", "Arson attack on a mosque injures worshippers")
    await add_incident(console, "i-church", "Arson attack on a church injures worshippers")
    source, version = await stored_source(console)
    draft = source.replace("any: [muslim, jewish, christian, sikh, hindu, buddhist, jain, bahai]",
                           "any: [muslim, jewish, sikh, hindu, buddhist, jain, bahai]")
    assert draft != source
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    stored_versions = await version_count(console)
    async with aclosing(client):
        check = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": draft, "action": "check", "base_version": str(version)})
        assert check.status_code == 200
        summary = " ".join(check.text.split())
        assert "the draft would have fired <strong>1</strong> time; the stored version: 2" in summary
        assert "Incidents the stored version fired on but the draft would not" in check.text
        assert await version_count(console) == stored_versions  # validating stores nothing

        no_note = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": draft, "action": "save", "note": " "})
        assert no_note.status_code == 422 and "note: say what this version changes" in no_note.text

        saved = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": draft, "action": "save", "base_version": str(version),
            "note": "churches are covered by another playbook"})
        assert saved.status_code == 303
        assert saved.headers["location"] == f"/playbooks/{PID}/saved?saved={version + 1}"
        page = await client.get(saved.headers["location"])
        assert f"Saved version {version + 1}" in page.text
        assert "churches are covered by another playbook" in page.text  # history

        diff = await client.get(f"/playbooks/{PID}?from={version}&to={version + 1}")
        assert '<span class="del">-    any: [muslim, jewish, christian,' in diff.text
        assert '<span class="add">+    any: [muslim, jewish, sikh,' in diff.text

        stale = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": source, "action": "save", "base_version": str(version),
            "note": "revert"})
        assert stale.status_code == 409  # someone (here: we) saved a newer version meanwhile

    async with console.db.transaction() as session:
        current = await store.current_set(session)
        audit = (await session.execute(select(AuditRow).where(
            AuditRow.action == "playbook.apply", AuditRow.subject == f"playbook:{PID}")
            .order_by(AuditRow.at.desc()))).scalars().first()
        staged = (await session.execute(select(OutboxRow).where(
            OutboxRow.topic == "prevent.playbooks.v1"))).scalars().all()
    assert current.version_of(PID) == version + 1
    assert "christian" not in current.get(PID).match.communities.any
    assert audit.actor == "engagement-officer" and audit.reason == "churches are covered by another playbook"
    assert staged, "the change is announced on prevent.playbooks.v1 through the outbox"
    holder = PlaybookHolder()
    await holder.reload(console.db)  # what a rules consumer does on the announcement
    assert holder.compiled.source.version_of(PID) == version + 1


async def test_a_new_playbook_starts_at_version_one(console: Console) -> None:
    source, _ = await stored_source(console)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        form = await client.get("/playbooks/new")
        assert form.status_code == 200 and 'name="csrf_token"' in form.text
        taken = await client.post("/playbooks/new", data={
            "csrf_token": token, "source": source, "action": "save", "note": "copy"})
        assert taken.status_code == 422 and "already exists" in taken.text
        saved = await client.post("/playbooks/new", data={
            "csrf_token": token, "source": source.replace(f"id: {PID}", "id: pow-copy"),
            "action": "save", "note": "a copy"})
        assert saved.headers["location"] == "/playbooks/pow-copy/saved?saved=1"


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DUTY_INSPECTOR])
async def test_readers_cannot_save_or_open_the_editor(console: Console, role: Role) -> None:
    source, version = await stored_source(console)
    client, token = await console.signed_in(role)
    async with aclosing(client):
        assert (await client.get(f"/playbooks/{PID}")).status_code == 200
        assert "Edit (new version)" not in (await client.get(f"/playbooks/{PID}")).text
        assert (await client.get(f"/playbooks/{PID}/edit")).status_code == 403
        for action in ("save", "check"):
            response = await client.post(f"/playbooks/{PID}/edit", data={
                "csrf_token": token, "source": source + "\n# changed\n", "action": action,
                "note": "sneaky"})
            assert response.status_code == 403, action
    _, after = await stored_source(console)
    assert after == version
