"""Issue 23: contact addresses are validated at the edge (the registry model behind edits,
imports and the API) with a real parser, not the old ``^https?://`` prefix check."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from prevent import users
from prevent.cli import admin
from prevent.partners.registry import (
    ContactIn,
    RegistryIn,
    SiteIn,
    apply_registry,
    check_webhook_url,
    export_registry,
    parse_registry,
    registry_yaml,
)
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import Contact, Site
from prevent.platform.yamlsource import SourceError
from prevent.users import Role
from prevent.web.app import ConsoleState, create_app

REFUSED = {
    "http://0177.0.0.1/hook": "standard form",  # octal 127.0.0.1: InvalidURL in httpx (M1)
    "http://0x7f.1/hook": "standard form",  # hexadecimal and shortened: 127.0.0.1 to a resolver
    "http://127.1/hook": "standard form",
    "http://2130706433/hook": "standard form",  # 127.0.0.1 as one number
    "http://192.168.010.1/hook": "standard form",  # a leading zero (octal to some parsers)
    "http://example.org/hook\r\nX-Injected: yes": "control characters",
    "http://example.org/ho ok": "spaces",
    "http://example.org\\@evil.example/": "backslashes",
    "http://user:secret@example.org/hook": "credentials",
    "http://example.org:99999/hook": "not a valid URL",
    "http://example.org:0/hook": "port 0",
    "ftp://example.org/hook": "http:// or https://",
    "javascript:alert(1)": "http:// or https://",
    "https:///hook": "needs a host",
    "http://[::1/hook": "not a valid URL",
    "http://exa$mple.org/hook": "not a valid host name",
}
ACCEPTED = ["https://hooks.example.org/prevent?centre=12", "http://192.0.2.10:8080/hook",
            "https://[2001:db8::1]/hook", "https://xn--bcher-kva.example/hook",
            "https://bücher.example/hook"]


def contact_with(**values: object) -> dict[str, object]:
    return {"contact_id": "c-1", "name": "Sample Person", "channels": ["webhook"], "consent": True,
            "webhook_url": "https://hooks.example.org/x"} | values


@pytest.mark.parametrize("url", sorted(REFUSED))
def test_a_malformed_or_ambiguous_webhook_url_is_refused_with_the_reason(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ContactIn.model_validate(contact_with(webhook_url=url))
    assert REFUSED[url] in str(caught.value)


@pytest.mark.parametrize("url", ACCEPTED)
def test_ordinary_webhook_urls_are_accepted_unchanged(url: str) -> None:
    assert ContactIn.model_validate(contact_with(webhook_url=url)).webhook_url == url
    assert check_webhook_url(url) == url


@pytest.mark.parametrize("email", ["person@example.org\r\nBcc: x@evil.example",
                                   "person@example.org\nBcc: x@evil.example", "per son@example.org",
                                   "person@exa\x00mple.org"])
def test_an_email_address_with_control_characters_or_spaces_is_refused(email: str) -> None:
    with pytest.raises(ValidationError):
        ContactIn.model_validate(contact_with(email=email, channels=["email"]))


async def test_an_import_with_a_broken_webhook_names_the_line_and_applies_nothing(
        tmp_path: Path, settings: Settings) -> None:
    csv = tmp_path / "partners.csv"
    csv.write_text(
        "site_id,site_name,communities,municipality,contact_id,contact_name,webhook_url,channels,consent\n"
        "site-1,Sample Mosque,muslim,Riverside,c-1,Sample One,https://hooks.example.org/a,webhook,yes\n"
        "site-2,Sample Temple,hindu,Riverside,c-2,Sample Two,http://0177.0.0.1/hook,webhook,yes\n",
        encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        parse_registry(csv)
    assert any(p.startswith(f"{csv}:3: webhook_url:") and "0177.0.0.1" in p
               for p in caught.value.problems), caught.value.problems
    with pytest.raises(SourceError):
        await admin.import_file(settings, csv, actor="test")
    async with admin.open_db(settings) as db, db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Site))).scalar() == 0
        assert (await session.execute(select(func.count()).select_from(Contact))).scalar() == 0


async def test_the_api_refuses_a_site_whose_contact_has_a_broken_webhook(
        db: Database, settings: Settings) -> None:
    async with db.transaction() as session:
        await users.add_user(session, "officer-edge", Role.ENGAGEMENT_OFFICER,
                             "a long enough test password", actor="test")
        token = await users.issue_token(session, "officer-edge", actor="test")
    app = create_app(None)  # type: ignore[arg-type] - state set directly, no lifespan
    app.state.console = ConsoleState(db=db, settings=settings)
    site = {"site_id": "site-1", "name": "Sample Mosque", "communities": ["muslim"],
            "municipality": "Riverside",
            "contacts": [contact_with(webhook_url="http://0177.0.0.1/hook")]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        refused = await client.put("/api/registry/sites/site-1", json=site)
        site["contacts"] = [contact_with(webhook_url="https://hooks.example.org/x")]
        accepted = await client.put("/api/registry/sites/site-1", json=site)
    assert refused.status_code == 422 and "standard form" in refused.text
    assert accepted.status_code == 200, accepted.text
    async with db.transaction() as session:
        stored = await session.get(Contact, "c-1")
    assert stored is not None and stored.webhook_url == "https://hooks.example.org/x"


async def test_a_contact_stored_before_the_checks_stays_readable_to_be_corrected(db: Database) -> None:
    site = SiteIn(site_id="site-1", name="Sample Mosque", communities=["muslim"],
                  municipality="Riverside", contacts=[ContactIn.model_validate(contact_with())])
    async with db.transaction() as session:
        await apply_registry(session, RegistryIn(sites=[site]))
        await session.execute(update(Contact).values(webhook_url="http://0177.0.0.1/hook"))
    async with db.transaction() as session:
        exported = await export_registry(session)
    assert exported.sites[0].contacts[0].webhook_url == "http://0177.0.0.1/hook"
    assert "http://0177.0.0.1/hook" in registry_yaml(exported)
