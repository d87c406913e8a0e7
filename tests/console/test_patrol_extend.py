"""Extending an alert's directed patrols from its page (the stand-down review's request):
duty inspectors only, a required reason, and a second click extends nothing."""

from __future__ import annotations

import re
from contextlib import aclosing
from datetime import timedelta

from sqlalchemy import select

from notifiers import patrol
from prevent.alerts import lifecycle
from prevent.contracts import PatrolAssignment
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.tables import PatrolRow
from prevent.users import Principal, Role

from .conftest import Console

INSPECTOR = Principal("duty-inspector", Role.DUTY_INSPECTOR)


async def confirmed_alert_with_patrols(console: Console) -> str:
    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    confirmed = await lifecycle.decide(console.db, INSPECTOR, proposed.alert_id, action="confirm",
                                       expected_revision=proposed.revision)
    holder = PlaybookHolder()
    await holder.reload(console.db)
    async with console.db.transaction() as session:
        playbook = await holder.version(console.db, confirmed.playbook_id, confirmed.playbook_version)
        assert await patrol.handle_alert(session, confirmed, playbook) > 0
    return confirmed.alert_id


async def ends(console: Console) -> list:
    async with console.db.transaction() as session:
        return sorted(PatrolAssignment.model_validate(r.payload).ends_at
                      for r in (await session.execute(select(PatrolRow))).scalars())


async def test_an_inspector_extends_the_patrols_once_from_the_alert_page(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    before = await ends(console)
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = await client.get(f"/alerts/{alert_id}")
        assert "<h2>Directed patrols</h2>" in page.text and 'id="extend-form"' in page.text
        until = re.search(r'name="until" value="([^"]+)"', page.text).group(1)
        form = {"csrf_token": token, "until": until, "hours": "6", "note": "vigil on Friday"}
        no_reason = await client.post(f"/alerts/{alert_id}/patrols/extend", data=form | {"note": " "})
        assert no_reason.status_code == 422 and "say why" in no_reason.text
        done = await client.post(f"/alerts/{alert_id}/patrols/extend", data=form)
        assert done.status_code == 303
        assert "Patrols extended by 6 hours." in (await client.get(done.headers["location"])).text
        twice = await client.post(f"/alerts/{alert_id}/patrols/extend", data=form)
        assert twice.status_code == 409 and "reload and check" in twice.text
    assert await ends(console) == [t + timedelta(hours=6) for t in before]


async def test_only_inspectors_see_and_use_the_extension(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    before = await ends(console)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = await client.get(f"/alerts/{alert_id}")
        assert "<h2>Directed patrols</h2>" in page.text and 'id="extend-form"' not in page.text
        until = before[-1].isoformat()
        refused = await client.post(f"/alerts/{alert_id}/patrols/extend", data={
            "csrf_token": token, "until": until, "hours": "6", "note": "x"})
    assert refused.status_code == 403
    assert await ends(console) == before
