"""Editing one partner site and its contacts in the browser form: field-level errors, all or
nothing, audited through prevent.partners.edits, and only for engagement officers (and admins)."""

from __future__ import annotations

from contextlib import aclosing
from html.parser import HTMLParser
from urllib.parse import urlencode

from sqlalchemy import select

from prevent.partners.registry import export_registry
from prevent.platform.storage.tables import AuditRow
from prevent.users import Role

from .conftest import Console

SITE = "site-masjid-riverside"


async def site(console: Console, site_id: str = SITE):
    async with console.db.transaction() as session:
        return next((s for s in (await export_registry(session)).sites if s.site_id == site_id), None)


class FormReader(HTMLParser):
    """The site form's fields as a browser would submit them (checked boxes, selected options)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self.select: str | None = None
        self.first_option: str | None = None
        self.selected = False
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.fields.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self.select, self.first_option, self.selected = a.get("name"), None, False
        elif tag == "option" and self.select:
            if self.first_option is None:
                self.first_option = a.get("value") or ""
            if "selected" in a:
                self.fields.append((self.select, a.get("value") or ""))
                self.selected = True
        elif tag == "textarea":
            self.textarea = a.get("name")
            self.fields.append((self.textarea or "", ""))

    def handle_data(self, data: str) -> None:
        if self.textarea:
            name, value = self.fields.pop()
            self.fields.append((name, value + data))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self.select and not self.selected:
            self.fields.append((self.select, self.first_option or ""))
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def submission(page: str, token: str, form: str = "site-form", **changes: str) -> dict:
    """Keyword arguments for client.post: the form url-encoded (repeated names kept)."""
    reader = FormReader()
    reader.feed(page.split(f'id="{form}"', 1)[1].split("</form>", 1)[0])
    data = [(k, v) for k, v in reader.fields if k not in changes and k != "csrf_token"]
    body = urlencode(data + list(changes.items()) + [("csrf_token", token)])
    return {"content": body, "headers": {"content-type": "application/x-www-form-urlencoded"}}


async def test_an_officer_edits_a_site_and_its_contacts(console: Console) -> None:
    before = await site(console)
    assert before is not None and before.contacts
    blank = len(before.contacts)  # the form's empty row for a new contact
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = await client.get(f"/partners/sites/{SITE}")
        assert page.status_code == 200 and 'name="csrf_token"' in page.text
        data = submission(page.text, token, name="Riverside Mosque (renamed)", **{
            "c0-phone": "12", "c0-email": "not-an-email", "lat": "95",
            f"c{blank}-contact_id": "new-contact"})
        bad = await client.post("/partners/sites", **data)
        assert bad.status_code == 422
        assert ('id="c0-email" name="c0-email" type="email" value="not-an-email" aria-invalid="true"'
                in bad.text)
        assert '<p class="field-error" id="c0-phone-error">Phone: not a phone number: use 7 to 20' \
            in bad.text
        assert '<p class="field-error" id="f-lat-error">Latitude: Input should be less than or equal to 90' \
            in bad.text
        assert f'id="c{blank}-name-error">Name: String should have at least 1 character' in bad.text
        assert (await site(console)) == before  # nothing stored

        good = submission(page.text, token, name="Riverside Mosque (renamed)", **{
            f"c{blank}-contact_id": "riverside-new", f"c{blank}-name": "New Contact",
            f"c{blank}-email": "new@example.org"})
        saved = await client.post("/partners/sites", **good)
        assert saved.status_code == 303, saved.text
        assert "Saved." in (await client.get(saved.headers["location"])).text
    after = await site(console)
    assert after.name == "Riverside Mosque (renamed)"
    assert [c.contact_id for c in after.contacts][-1] == "riverside-new"
    assert len(after.contacts) == len(before.contacts) + 1
    async with console.db.transaction() as session:
        entry = (await session.execute(select(AuditRow).where(
            AuditRow.action == "registry.site_put", AuditRow.subject == f"site:{SITE}"))).scalar_one()
    assert entry.actor == "engagement-officer"


async def test_new_site_ids_must_be_free_and_zones_known(console: Console) -> None:
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        base = {"csrf_token": token, "name": "New centre", "kind": "community_centre",
                "communities": "muslim; arab", "municipality": "Northtown", "contact_rows": "0"}
        taken = await client.post("/partners/sites", data=base | {"site_id": SITE})
        assert taken.status_code == 422 and "already exists" in taken.text
        zone = await client.post("/partners/sites", data=base | {"site_id": "site-new", "zone_id": "zone-x"})
        assert zone.status_code == 422
        assert 'id="f-zone_id-error">Patrol zone: unknown patrol zone' in zone.text
        ok = await client.post("/partners/sites", data=base | {"site_id": "site-new"})
        assert ok.status_code == 303
        assert (await site(console, "site-new")).communities == ["muslim", "arab"]
        deleted = await client.post("/partners/sites/site-new/delete", data={"csrf_token": token})
        assert deleted.status_code == 303
    assert await site(console, "site-new") is None


async def test_inspectors_cannot_open_or_save_the_site_form(console: Console) -> None:
    client, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        assert (await client.get(f"/partners/sites/{SITE}")).status_code == 403
        response = await client.post("/partners/sites", data={
            "csrf_token": token, "existing": SITE, "name": "x", "communities": "muslim",
            "municipality": "y", "contact_rows": "0"})
        assert response.status_code == 403
        assert (await client.post(f"/partners/sites/{SITE}/delete",
                                  data={"csrf_token": token})).status_code == 403
    assert (await site(console)).name != "x"


async def test_the_form_says_when_a_contacts_own_choice_overrides_it(console: Console) -> None:
    """A contact who opted out through a notice stays opted out when an officer ticks consent
    in the form, and the form says why and how consent is renewed."""
    from datetime import UTC, datetime

    from prevent.platform.storage.tables import Contact

    before = await site(console)
    contact_id = before.contacts[0].contact_id
    async with console.db.transaction() as session:
        row = await session.get(Contact, contact_id)
        row.consent, row.own_choice_at = False, datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = await client.get(f"/partners/sites/{SITE}")
        assert 'id="c0-consent" name="c0-consent" value="yes" aria-describedby="c0-own">' in page.text
        assert ('<p class="meta own-choice" id="c0-own">This contact set their own preferences on\n'
                '      <time datetime="2026-11-20T09:30:00') in page.text
        assert "and opted out" in page.text
        assert f"prevent partners renew-consent {contact_id} --note" in page.text
        assert 'id="c1-own"' not in page.text  # only the contact who chose
        saved = await client.post("/partners/sites", **submission(page.text, token, **{"c0-consent": "yes"}))
        assert saved.status_code == 303, saved.text
        again = await client.get(saved.headers["location"])
    assert 'id="c0-own"' in again.text
    assert (await site(console)).contacts[0].consent is False
