"""Patrol zones and the duty roster edited in the browser: field-level errors, nothing stored
on a bad form, a zone still used by sites kept, every change audited, officers only."""

from __future__ import annotations

from contextlib import aclosing

from sqlalchemy import select

from prevent.partners.registry import export_registry
from prevent.platform.storage.tables import AuditRow
from prevent.users import Role

from .conftest import Console
from .test_partner_editor import submission


async def registry_now(console: Console):
    async with console.db.transaction() as session:
        return await export_registry(session)


async def actions(console: Console) -> list[str]:
    async with console.db.transaction() as session:
        return list((await session.execute(select(AuditRow.action).where(
            AuditRow.action.like("registry.%")).order_by(AuditRow.at))).scalars())


async def test_an_officer_adds_renames_and_deletes_a_zone(console: Console) -> None:
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = await client.get("/partners/zones")
        assert page.status_code == 200
        assert "<td>zone-north</td>" in page.text and "Delete zone-north" not in page.text  # in use

        bad = await client.post("/partners/zones", data={
            "csrf_token": token, "zone_id": "zone-east", "name": "", "dispatch_email": "nope"})
        assert bad.status_code == 422 and "<h3>Nothing was saved: fix 2 problems</h3>" in bad.text
        assert 'id="z-name" name="name" type="text" value="" required aria-invalid="true"' in bad.text
        assert '<p class="field-error" id="z-dispatch_email-error">Dispatch email: value is not a valid' \
            in bad.text
        assert "zone-east" not in {z.zone_id for z in (await registry_now(console)).zones}

        added = await client.post("/partners/zones", data={
            "csrf_token": token, "zone_id": "zone-east", "name": "East", "dispatch_email": ""})
        assert added.status_code == 303 and "Zone zone-east saved." in \
            (await client.get(added.headers["location"])).text
        edit = await client.get("/partners/zones?zone=zone-east")
        assert 'id="z-name" name="name" type="text" value="East" required>' in edit.text
        renamed = await client.post("/partners/zones", data={
            "csrf_token": token, "zone_id": "zone-east", "name": "East bank",
            "dispatch_email": "east@example.org"})
        assert renamed.status_code == 303
        zones = {z.zone_id: z for z in (await registry_now(console)).zones}
        assert zones["zone-east"].name == "East bank"
        assert str(zones["zone-east"].dispatch_email) == "east@example.org"

        used = await client.post("/partners/zones/zone-north/delete", data={"csrf_token": token})
        assert used.status_code == 409 and "zone zone-north is used by sites" in used.text
        gone = await client.post("/partners/zones/zone-east/delete", data={"csrf_token": token})
        assert gone.status_code == 303
        missing = await client.post("/partners/zones/zone-east/delete", data={"csrf_token": token})
        assert missing.status_code == 404
    assert {z.zone_id for z in (await registry_now(console)).zones} == {"zone-north", "zone-south"}
    assert await actions(console) == ["registry.zone_put", "registry.zone_put", "registry.zone_delete"]


async def test_an_officer_edits_the_duty_roster(console: Console) -> None:
    before = (await registry_now(console)).roster
    assert [e.entry_id for e in before] == ["roster-duty-1", "roster-super-1"]
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = await client.get("/partners/roster")
        assert page.status_code == 200
        blank = len(before)  # the form's empty row for a new entry
        bad = await client.post("/partners/roster", **submission(page.text, token, "roster-form", **{
                f"r{blank}-entry_id": "roster-duty-1", f"r{blank}-name": "Second on call",
                f"r{blank}-email": "not-an-email"}))
        assert bad.status_code == 422
        assert f'id="r{blank}-email-error">Email: value is not a valid email address' in bad.text
        assert (await registry_now(console)).roster == before

        good = await client.post("/partners/roster", **submission(page.text, token, "roster-form", **{
                "r1-remove": "yes", f"r{blank}-entry_id": "roster-duty-2",
                f"r{blank}-name": "Second on call (sample)", f"r{blank}-email": "second@example.org"}))
        assert good.status_code == 303, good.text
        duplicate = await client.post("/partners/roster", data={
            "csrf_token": token, "rows": "2",
            "r0-entry_id": "a", "r0-level": "1", "r0-name": "A", "r0-email": "a@example.org",
            "r1-entry_id": "a", "r1-level": "2", "r1-name": "B", "r1-email": "b@example.org"})
        assert duplicate.status_code == 422 and 'id="r1-entry_id-error"' in duplicate.text
    after = (await registry_now(console)).roster
    assert [(e.entry_id, e.level) for e in after] == [("roster-duty-1", 1), ("roster-duty-2", 1)]
    assert await actions(console) == ["registry.roster_put"]


async def test_inspectors_cannot_change_zones_or_the_roster(console: Console) -> None:
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = await client.get("/partners/zones")
        # the console explains the refusal on a page; the API answers JSON (tests/lifecycle)
        assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
        assert "Not allowed" in page.text and "read the partner registry" in page.text
        assert (await client.get("/partners/roster")).status_code == 403
        zone = await client.post("/partners/zones", data={"csrf_token": token, "zone_id": "z", "name": "Z"})
        assert zone.status_code == 403
        assert (await client.post("/partners/zones/zone-south/delete",
                                  data={"csrf_token": token})).status_code == 403
        roster = await client.post("/partners/roster", data={"csrf_token": token, "rows": "0"})
        assert roster.status_code == 403
    assert len((await registry_now(console)).roster) == 2
    assert await actions(console) == []
