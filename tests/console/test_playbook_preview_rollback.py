"""Issue 22, point 6: the playbook editor previews the rendered notice for a fictional sample
site in each language, and rolls a playbook back to an earlier version in one step (a new
version, audited, announced, refused when the page is stale and to roles that may not edit)."""

from __future__ import annotations

import html
from contextlib import aclosing

import pytest
from sqlalchemy import select, update

from prevent.contracts import PlaybooksChanged, utcnow
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.tables import AuditRow, Contact, OutboxRow, PlaybookVersion, Site
from prevent.rules.playbooks import store
from prevent.users import Role

from .conftest import Console

PID = "place-of-worship-attack"
SAMPLE_SITE = "Riverside Islamic Centre (sample)"
SAMPLE_CONTACT = "Sam Example"


async def stored_source(console: Console) -> tuple[str, int]:
    async with console.db.transaction() as session:
        row = next(r for r in await store.latest_versions(session) if r.playbook_id == PID)
    return row.source, row.version


def text_of(page: str) -> str:
    return html.unescape(page)


async def test_the_playbook_page_previews_its_notice_in_each_language(console: Console) -> None:
    client, _ = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        page = await client.get(f"/playbooks/{PID}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert 'id="notice-preview"' in page.text
    for channel in ("email", "sms"):
        for language in ("en", "fr"):
            assert f'data-channel="{channel}" data-language="{language}"' in page.text
    # Rendered with the playbook's own template (place_of_worship_attack.*.j2), not default.
    assert "Subject:</strong> Advisory: Sample event: armed attack" in text
    assert "Subject:</strong> Avis : Sample event: armed attack" in text
    assert "Bonjour " + SAMPLE_CONTACT in text and "Dear " + SAMPLE_CONTACT in text
    assert SAMPLE_SITE in text and "the fictional sample site" in text
    assert "ACK " in text  # the SMS as the gateway receives it, with its reply code


async def test_a_changed_sample_site_is_never_shown_the_built_in_example_is(console: Console
                                                                           ) -> None:
    """A registry entry that is no longer the fictional sample may be real: in doubt, the
    built-in example, whatever the role."""
    async with console.db.transaction() as session:
        await session.execute(update(Site).values(name="Real Centre"))
        await session.execute(update(Contact).values(name="Real Person"))
    client, _ = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = await client.get(f"/playbooks/{PID}")
    text = text_of(page.text)
    assert "Real Centre" not in text and "Real Person" not in text
    assert "a built-in fictional example" in text and "Example Community Centre (sample)" in text
    assert "Dear Alex Example" in text


async def test_validating_a_draft_previews_the_notice_it_would_send(console: Console) -> None:
    source, version = await stored_source(console)
    draft = source.replace("template: place_of_worship_attack", "template: threat_level")
    assert draft != source
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        check = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": draft, "action": "check", "base_version": str(version)})
        assert check.status_code == 200 and "The draft is valid" in check.text
        text = text_of(check.text)
        assert "The notice the draft would send" in text
        assert "The national terrorism threat level has changed:" in text  # threat_level.en.j2
        assert 'data-channel="email" data-language="fr"' in check.text
        bad = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": source.replace("min_severity: 2", "min_severity: 9"),
            "action": "check", "base_version": str(version)})
        assert bad.status_code == 422 and 'id="notice-preview"' not in bad.text


async def test_an_officer_rolls_back_in_one_step(console: Console) -> None:
    source, v1 = await stored_source(console)
    draft = source.replace("min_severity: 2", "min_severity: 3")
    assert draft != source
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        saved = await client.post(f"/playbooks/{PID}/edit", data={
            "csrf_token": token, "source": draft, "action": "save", "base_version": str(v1),
            "note": "only grave attacks"})
        assert saved.status_code == 303
        v2 = v1 + 1
        page = await client.get(f"/playbooks/{PID}")
        assert f"Roll back to v{v1}</button>" in page.text
        assert f"Roll back to v{v2}</button>" not in page.text  # the version in force
        assert f'name="base_version" value="{v2}"' in page.text

        no_note = await client.post(f"/playbooks/{PID}/rollback", data={
            "csrf_token": token, "version": str(v1), "base_version": str(v2), "note": " "})
        assert no_note.status_code == 422 and "note: say what this version changes" in no_note.text
        missing = await client.post(f"/playbooks/{PID}/rollback", data={
            "csrf_token": token, "version": "42", "base_version": str(v2), "note": "x"})
        assert missing.status_code == 404

        back = await client.post(f"/playbooks/{PID}/rollback", data={
            "csrf_token": token, "version": str(v1), "base_version": str(v2),
            "note": "severity 2 attacks matter too"})
        assert back.status_code == 303
        assert back.headers["location"] == f"/playbooks/{PID}/saved?saved={v2 + 1}&restored={v1}"
        page = await client.get(back.headers["location"])
        assert f"Version {v1} of {PID} is back in force, stored as version {v2 + 1}" in page.text
        assert f"rollback to v{v1}: severity 2 attacks matter too" in page.text

        stale = await client.post(f"/playbooks/{PID}/rollback", data={
            "csrf_token": token, "version": str(v1), "base_version": str(v2), "note": "again"})
        assert stale.status_code == 409 and "after you opened version" in stale.text
        no_base = await client.post(f"/playbooks/{PID}/rollback", data={
            "csrf_token": token, "version": str(v1), "note": "again"})
        assert no_base.status_code == 409

    async with console.db.transaction() as session:
        versions = [r.version for r in (await session.execute(select(PlaybookVersion).where(
            PlaybookVersion.playbook_id == PID))).scalars()]
        newest = await store.get_version(session, PID, v2 + 1)
        trail = (await session.execute(select(AuditRow).where(
            AuditRow.action == "playbook.rollback", AuditRow.subject == f"playbook:{PID}")
        )).scalars().all()
        events = [PlaybooksChanged.model_validate_json(o.payload) for o in (await session.execute(
            select(OutboxRow).where(OutboxRow.topic == "prevent.playbooks.v1"))).scalars()]
    assert sorted(versions) == list(range(1, v2 + 2))  # history is never rewritten
    assert newest is not None and newest.source == source and newest.author == "engagement-officer"
    assert len(trail) == 1 and trail[0].actor == "engagement-officer"
    assert trail[0].before == {"version": v2}
    assert trail[0].after == {"version": v2 + 1, "restored": v1}
    assert trail[0].reason == f"rollback to v{v1}: severity 2 attacks matter too"
    assert any(e.versions.get(PID) == v2 + 1 for e in events), "announced like a save"
    holder = PlaybookHolder()
    await holder.reload(console.db)
    assert holder.compiled.source.version_of(PID) == v2 + 1
    assert holder.compiled.source.get(PID).match.min_severity == 2


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DUTY_INSPECTOR])
async def test_readers_cannot_roll_back(console: Console, role: Role) -> None:
    _, version = await stored_source(console)
    client, token = await console.signed_in(role)
    async with aclosing(client):
        page = await client.get(f"/playbooks/{PID}")
        assert "/rollback" not in page.text
        refused = await client.post(f"/playbooks/{PID}/rollback", data={
            "csrf_token": token, "version": str(version), "base_version": str(version),
            "note": "sneaky"})
        assert refused.status_code == 403
    assert (await stored_source(console))[1] == version


async def test_a_rollback_without_the_csrf_token_is_refused(console: Console) -> None:
    _, version = await stored_source(console)
    client, _ = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        refused = await client.post(f"/playbooks/{PID}/rollback", data={
            "version": str(version), "base_version": str(version), "note": "x"})
        assert refused.status_code == 403


async def test_a_version_that_fails_todays_checks_is_not_rolled_back(console: Console) -> None:
    """A version stored before `template:` was checked (issue 22, defect 3) names a template
    that does not exist: rolling back to it is refused with the problem, nothing is stored."""
    source, v1 = await stored_source(console)
    async with console.db.transaction() as session:
        session.add(PlaybookVersion(
            playbook_id=PID, version=v1 + 1, author="old", note="typo",
            created_at=utcnow(),
            source=source.replace("template: place_of_worship_attack", "template: threat_levle")))
        session.add(PlaybookVersion(playbook_id=PID, version=v1 + 2, author="old",
                                          note="fixed", created_at=utcnow(), source=source))
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        refused = await client.post(f"/playbooks/{PID}/rollback", data={
            "csrf_token": token, "version": str(v1 + 1), "base_version": str(v1 + 2),
            "note": "back to the typo"})
        assert refused.status_code == 422
        assert f"Not rolled back to v{v1 + 1}" in refused.text
        assert "template threat_levle.en.j2 is missing" in refused.text
        assert 'value="back to the typo"' in refused.text  # the note is kept
    assert (await stored_source(console))[1] == v1 + 2
