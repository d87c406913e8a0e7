"""The diasporas a partner site serves, in the console and the API (issue 21, point 6): an
officer names them in the site editor (by code or by name; unknown ones shown at the field,
nothing stored), the CSV import lists every unknown one with its line, the partners list and
the site page show them, the diaspora map lists the sites serving each country and region,
and the Decide box says why a site serving the diaspora is in an alert's audience. Every
site is fictional."""

from __future__ import annotations

import re
from contextlib import aclosing
from html import unescape

from sqlalchemy import select

from prevent.alerts import states as alerts
from prevent.contracts import Alert, AlertStatus, Evidence, utcnow
from prevent.platform.storage.tables import AuditRow, Site
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.rules.playbooks import store
from prevent.users import Role

from .conftest import Console

NEW_SITE = {"site_id": "s-caribbean", "name": "Sample Caribbean Centre", "kind": "community_centre",
            "communities": "hispanic", "municipality": "Town", "contact_rows": "1",
            "c0-contact_id": "c-carib", "c0-name": "Sample Person", "c0-email": "carib@example.org",
            "c0-channels": "email", "c0-consent": "yes", "c0-language": "fr",
            "c0-webhook_format": "json"}


async def stored(console: Console, site_id: str) -> list[str] | None:
    async with console.db.transaction() as session:
        site = await session.get(Site, site_id)
        return None if site is None else list(site.diasporas)


async def seed_map(console: Console) -> None:
    async with console.db.transaction() as session:
        await diaspora.seed(session, console.app.state.console.settings.playbooks_dir)


async def test_an_officer_names_a_sites_diasporas_by_code_or_name(console: Console) -> None:
    await seed_map(console)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        refused = await client.post("/partners/sites", data={
            **NEW_SITE, "csrf_token": token, "diasporas": "jm; QQ; Narnia"})
        assert refused.status_code == 422
        text = unescape(refused.text)
        error = re.search(r'<p class="field-error" id="f-diasporas-error">(.*?)</p>', text, re.S)
        assert error, text
        assert "unknown country code 'QQ'" in error.group(1)
        assert "unknown country or region 'Narnia'" in error.group(1)
        assert 'id="f-diasporas" name="diasporas" type="text" value="jm; QQ; Narnia"' in text
        assert await stored(console, "s-caribbean") is None  # nothing stored

        saved = await client.post("/partners/sites", data={
            **NEW_SITE, "csrf_token": token, "diasporas": "jm; Haiti; kerala; JM"})
        assert saved.status_code == 303, saved.text
        assert await stored(console, "s-caribbean") == ["JM", "HT", "IN-KL"]
        page = unescape((await client.get("/partners/sites/s-caribbean")).text)
        assert 'value="JM; HT; IN-KL"' in page
        assert "Serves the diasporas of: Jamaica (JM); Haiti (HT); Kerala (IN-KL)" in page
        listing = await client.get("/partners", params={"q": "jamaica"})
        assert '<abbr title="Jamaica">JM</abbr>' in listing.text and "Sample Caribbean Centre" in listing.text
    async with console.db.transaction() as session:
        entry = (await session.execute(select(AuditRow).where(
            AuditRow.action == "registry.site_put", AuditRow.subject == "site:s-caribbean"))).scalars().one()
    assert entry.after["diasporas"] == ["JM", "HT", "IN-KL"]


async def test_the_csv_import_lists_every_unknown_diaspora_with_its_line(console: Console) -> None:
    header = "site_id,site_name,communities,municipality,diasporas\n"
    bad = header + "s-one,One,black,Town,QQ\ns-two,Two,muslin,Town,IN-NOWHERE;Punjab\n"
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        refused = await client.post("/partners/import", data={"csrf_token": token},
                                    files={"file": ("sites.csv", bad.encode(), "text/csv")})
        assert refused.status_code == 422
        listed = [unescape(li) for li in re.findall(r"<li>(.*?)</li>", refused.text, re.S)]
        assert any(p.startswith("sites.csv:2: site s-one: diasporas: unknown country code 'QQ'")
                   for p in listed), listed
        assert any(p.startswith("sites.csv:3: site s-two: unknown community 'muslin'") for p in listed)
        assert any(p.startswith("sites.csv:3: site s-two: diasporas: unknown country or region "
                                "'IN-NOWHERE'") for p in listed), listed
        ok = await client.post("/partners/import", data={"csrf_token": token}, files={"file": (
            "sites.csv", (header + "s-one,One,black,Town,jm;Punjab\n").encode(), "text/csv")})
        assert ok.status_code == 200, ok.text
    assert await stored(console, "s-one") == ["JM", "IN-PB"]


async def test_the_api_checks_and_stores_codes(console: Console) -> None:
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    body = {"site_id": "s-api", "name": "Sample API Hall", "communities": ["sikh"],
            "municipality": "Town", "diasporas": ["Punjab", "Atlantis"]}
    async with aclosing(client):
        refused = await client.put("/api/registry/sites/s-api", json=body,
                                   headers={"X-CSRF-Token": token})
        assert refused.status_code == 422
        assert refused.json()["detail"] == [
            "site s-api: diasporas[1]: unknown country or region 'Atlantis': give an ISO 3166 "
            "country code (e.g. JM) or the id of a region of the diaspora map (e.g. IN-PB; see /diaspora)"]
        ok = await client.put("/api/registry/sites/s-api", json=dict(body, diasporas=["Punjab", "in"]),
                              headers={"X-CSRF-Token": token})
        assert ok.status_code == 200, ok.text
        exported = (await client.get("/api/registry")).json()
    assert next(s for s in exported["sites"] if s["site_id"] == "s-api")["diasporas"] == ["IN-PB", "IN"]


async def test_the_diaspora_map_lists_the_sites_serving_each_country_and_region(console: Console) -> None:
    await seed_map(console)
    async with console.db.transaction() as session:
        session.add(Site(site_id="s-serving", name="Sample Serving Hall", kind="community_centre",
                         communities=["black"], municipality="Town", diasporas=["JM", "IN-PB", "AQ"]))
        session.add(Site(site_id="s-stale", name="Sample Stale Hall", kind="community_centre",
                         communities=["black"], municipality="Town", diasporas=["IN-GONE"]))
    client, _ = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        page = (await client.get("/diaspora")).text
    jm = re.search(r'<tr data-country="JM">.*?</tr>', page, re.S).group(0)
    assert '<td class="serving">Sample Serving Hall</td>' in jm  # a viewer gets no editor link
    punjab = re.search(r'<tr data-region="IN-PB">.*?</tr>', page, re.S).group(0)
    assert "Sample Serving Hall" in punjab
    assert "Antarctica (AQ): a country this map does not list" in unescape(page)
    assert "IN-GONE: not a region of this version of the map" in page
    client, _ = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = (await client.get("/diaspora", params={"country": "JM"})).text
    assert '<a href="/partners/sites/s-serving">Sample Serving Hall</a>' in page


async def test_the_decide_box_says_why_a_site_serving_the_diaspora_is_in(console: Console) -> None:
    await seed_map(console)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        assert (await client.post("/partners/sites", data={
            **NEW_SITE, "csrf_token": token, "diasporas": "JM"})).status_code == 303
    now = utcnow()
    async with console.db.transaction() as session:
        latest = {r.playbook_id: r.version for r in await store.latest_versions(session)}
        await alerts.create(session, Alert(
            alert_id="alr_jm", cluster_id="cls_jm", incident_ids=("inc_jm",),
            playbook_id="diaspora-disaster-welfare", playbook_version=latest["diaspora-disaster-welfare"],
            status=AlertStatus.PROPOSED, revision=1, severity=3, communities=("black", "christian"),
            incident_type="natural_disaster", title="Hurricane makes landfall in Jamaica",
            country="JM", evidence=(Evidence(rule="country:JM", term="Jamaica"),),
            created_at=now, updated_at=now), actor="test")
    client, _ = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(client):
        page = unescape((await client.get("/alerts/alr_jm")).text)
    label = re.search(r'<label for="site-s-caribbean">(.*?)</label>', page, re.S)
    assert label and "Sample Caribbean Centre" in label.group(1)
    assert "serves the diaspora of Jamaica" in label.group(1)
    assert "(serves the diaspora of Jamaica)" in page  # in the preview of the notices too
