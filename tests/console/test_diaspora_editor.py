"""The diaspora map in the console (issue 21, point 6): every role reads the map in force, its
history and diffs; engagement officers validate a draft (problems name the line of the edited
text, with what the draft changes), save it with a note as a new version, and roll back to an
earlier version; duty inspectors may not. Every change is audited and announced."""

from __future__ import annotations

import re
from contextlib import aclosing

from sqlalchemy import select
from test_diaspora_versions import FILE_TEXT, PLAYBOOKS, jamaica_links, line_of

from prevent.contracts import PlaybooksChanged
from prevent.platform.storage.tables import AuditRow, OutboxRow
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.users import Role

from .conftest import Console

HAITIAN = jamaica_links(FILE_TEXT, "black, christian, haitian")


async def seeded(console: Console) -> None:
    async with console.db.transaction() as session:  # what `prevent up` does on first start
        assert await diaspora.seed(session, PLAYBOOKS) == 1


async def test_every_role_reads_the_map_and_only_editors_edit(console: Console) -> None:
    client, token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        page = await client.get("/diaspora")
        assert page.status_code == 200
        assert "no version stored yet" in page.text  # the file is in force until seeded
        assert re.search(r'<tr data-country="JM"><td>JM</td><td>black, christian</td>', page.text)
        assert 'data-region="IN-PB"' in page.text and "/diaspora/edit" not in page.text
        assert '<a href="/diaspora" aria-current="page">Diaspora map</a>' in page.text
    await seeded(console)
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = await client.get("/diaspora")
        assert "Version 1 (in force)" in page.text and "seeded from playbooks/" in page.text
        assert (await client.get("/diaspora/edit")).status_code == 403
        refused = await client.post("/diaspora/edit", data={
            "csrf_token": token, "source": HAITIAN, "note": "x", "action": "save"})
        assert refused.status_code == 403
        rollback = await client.post("/diaspora/rollback", data={
            "csrf_token": token, "version": "1", "note": "x"})
        assert rollback.status_code == 403
    async with console.db.transaction() as session:
        assert len(await diaspora.history(session)) == 1


async def test_an_officer_validates_saves_compares_and_rolls_back(console: Console) -> None:
    await seeded(console)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        editor = await client.get("/diaspora/edit")
        assert editor.status_code == 200
        assert 'name="base_version" value="1"' in editor.text and "countries:" in editor.text

        bad = jamaica_links(FILE_TEXT, "black, christian, carribean")
        line = line_of(bad, "carribean")
        for action in ("check", "save"):
            page = await client.post("/diaspora/edit", data={
                "csrf_token": token, "source": bad, "note": "typo", "action": action,
                "base_version": "1"})
            assert page.status_code == 422, action
            assert f'data-line="{line}">line {line}</a>: countries.' in page.text
            assert "unknown community &#39;carribean&#39;" in page.text
            assert "carribean" in page.text  # the draft is kept for fixing

        check = await client.post("/diaspora/edit", data={
            "csrf_token": token, "source": HAITIAN, "action": "check", "base_version": "1"})
        assert check.status_code == 200 and "The draft is valid" in check.text
        assert "<li>JM: +haitian</li>" in check.text
        assert '<span class="add">+    communities: [black, christian, haitian]</span>' in check.text

        no_note = await client.post("/diaspora/edit", data={
            "csrf_token": token, "source": HAITIAN, "action": "save", "note": " ", "base_version": "1"})
        assert no_note.status_code == 422 and "note: say what this version changes" in no_note.text

        saved = await client.post("/diaspora/edit", data={
            "csrf_token": token, "source": HAITIAN, "action": "save", "base_version": "1",
            "note": "Haitian families settled via Jamaica"})
        assert saved.status_code == 303 and saved.headers["location"] == "/diaspora/saved?saved=2"
        page = await client.get(saved.headers["location"])
        assert "Saved version 2 of the diaspora map" in page.text
        assert "Version 2 (in force)" in page.text and "Haitian families settled via Jamaica" in page.text
        assert re.search(r'<tr data-country="JM"><td>JM</td><td>black, christian, haitian</td>', page.text)

        diff = await client.get("/diaspora?from=1&to=2")
        assert '<span class="add">+    communities: [black, christian, haitian]</span>' in diff.text
        assert "<li>JM: +haitian</li>" in diff.text

        stale = await client.post("/diaspora/edit", data={
            "csrf_token": token, "source": FILE_TEXT, "action": "save", "base_version": "1",
            "note": "revert"})
        assert stale.status_code == 409 and "saved version 2 of the diaspora map" in stale.text

        old = await client.get("/diaspora?version=1")
        assert "Version 1</h2>" in old.text and "Roll back to version 1" in old.text
        assert 'name="base_version" value="2"' in old.text
        back = await client.post("/diaspora/rollback", data={
            "csrf_token": token, "version": "1", "base_version": "2", "note": "not the right link"})
        assert back.status_code == 303
        assert back.headers["location"] == "/diaspora/saved?saved=3&restored=1"
        page = await client.get(back.headers["location"])
        assert "Version 1 is back in force, stored as version 3" in page.text
        assert "rollback to v1: not the right link" in page.text
        assert (await client.post("/diaspora/rollback", data={
            "csrf_token": token, "version": "42", "note": "x"})).status_code == 404

    async with console.db.transaction() as session:
        versions = await diaspora.history(session)
        audit = (await session.execute(select(AuditRow).where(AuditRow.subject == diaspora.SUBJECT)
                                       .order_by(AuditRow.at))).scalars().all()
        events = [PlaybooksChanged.model_validate_json(o.payload) for o in (await session.execute(
            select(OutboxRow).where(OutboxRow.topic == "prevent.playbooks.v1"))).scalars()]
    assert [v.version for v in versions] == [3, 2, 1] and versions[0].source == FILE_TEXT
    assert [(a.action, a.actor) for a in audit][1:] == [("diaspora.apply", "engagement-officer"),
                                                        ("diaspora.rollback", "engagement-officer")]
    assert audit[1].reason == "Haitian families settled via Jamaica"
    assert {e.diaspora_version for e in events} >= {1, 2, 3}
    assert all(e.actor == "engagement-officer" for e in events if e.diaspora_version in (2, 3))


async def test_the_playbook_backtest_classifies_with_the_map_in_force(console: Console) -> None:
    await seeded(console)
    async with console.db.transaction() as session:
        await diaspora.save_draft(session, diaspora_officer(), HAITIAN, note="x", base_version=1,
                                  known=diaspora.known_communities(PLAYBOOKS))
    stored = await diaspora.in_force(console.db)
    clf = diaspora.cached_classifier(PLAYBOOKS, stored)
    assert "haitian" in clf.classify("Hurricane Melissa devastates Jamaica, killing 19").communities


def diaspora_officer():
    from prevent.users import Principal
    return Principal("engagement-officer", Role.ENGAGEMENT_OFFICER)


async def test_the_links_can_be_filtered_by_country(console: Console) -> None:
    await seeded(console)
    client, _ = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        page = await client.get("/diaspora?country=in")
    assert 'data-country="IN"' in page.text and 'data-country="JM"' not in page.text
    assert 'data-region="IN-PB"' in page.text and 'data-region="NG-' not in page.text
