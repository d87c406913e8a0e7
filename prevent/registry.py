"""The partner registry: sites, their contacts and patrol zones.

Data minimisation is a requirement: a contact is a name, a role, the ways to reach
them and their consent — nothing else. Imports validate every row first and then
apply all or nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.storage.tables import Contact, Site, Zone
from prevent.yamlsource import SourceError, load_yaml, validation_problems

Channel = Literal["email", "sms", "webhook"]
SiteKind = Literal["place_of_worship", "community_centre", "school", "cultural_centre", "other"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ZoneIn(Strict):
    zone_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1)
    dispatch_email: EmailStr | None = None


class ContactIn(Strict):
    contact_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    role: str = ""
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 ()-]{7,20}$")
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    language: Literal["en", "fr"] = "en"
    channels: list[Channel] = ["email"]
    consent: bool = False

    @field_validator("channels", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return [c.strip() for c in v.split(";") if c.strip()] if isinstance(v, str) else v

    def reachable_on(self, channel: str) -> bool:
        address = {"email": self.email, "sms": self.phone, "webhook": self.webhook_url}[channel]
        return channel in self.channels and address is not None


class SiteIn(Strict):
    site_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=300)
    kind: SiteKind = "place_of_worship"
    communities: list[str] = Field(min_length=1)
    address: str = ""
    municipality: str = Field(min_length=1)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    zone_id: str | None = None
    floor_plan_ref: str | None = None
    notes: str = ""
    contacts: list[ContactIn] = []

    @field_validator("communities", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return [c.strip() for c in v.split(";") if c.strip()] if isinstance(v, str) else v


class RegistryIn(Strict):
    zones: list[ZoneIn] = []
    sites: list[SiteIn] = []


CSV_SITE_FIELDS = ("site_id", "site_name", "kind", "communities", "address", "municipality", "lat",
                   "lon", "zone_id", "floor_plan_ref", "notes")
CSV_CONTACT_FIELDS = ("contact_id", "contact_name", "role", "email", "phone", "webhook_url",
                      "language", "channels", "consent")


def parse_registry(path: Path, known_zones: Iterable[str] = ()) -> RegistryIn:
    """Validate a YAML or CSV registry file; SourceError lists every bad row with its line."""
    text = path.read_text(encoding="utf-8-sig")
    registry = (_parse_csv(text, str(path)) if path.suffix.lower() == ".csv"
                else _parse_yaml(text, str(path)))
    _check_references(registry, set(known_zones), str(path))
    return registry


def _parse_yaml(text: str, source: str) -> RegistryIn:
    data, node = load_yaml(text, source)
    try:
        return RegistryIn.model_validate(data or {})
    except ValidationError as exc:
        raise SourceError(validation_problems(exc, node, source)) from exc


def _blank_to_none(row: dict[str, str]) -> dict[str, str | None]:
    return {k: (v if v not in ("", None) else None) for k, v in row.items()}


def _parse_csv(text: str, source: str) -> RegistryIn:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"site_id", "site_name", "communities", "municipality"} - set(reader.fieldnames or ())
    if missing:
        raise SourceError([f"{source}:1: header lacks columns: {', '.join(sorted(missing))}"])
    problems: list[str] = []
    sites: dict[str, SiteIn] = {}
    for row in reader:
        line = reader.line_num
        values = _blank_to_none(row)
        try:
            site_data = {k: values.get(k) for k in CSV_SITE_FIELDS if values.get(k) is not None}
            site_data["name"] = site_data.pop("site_name", None)
            contact = None
            if values.get("contact_id"):
                c = {k: values.get(k) for k in CSV_CONTACT_FIELDS if values.get(k) is not None}
                c["name"] = c.pop("contact_name", None)
                c["consent"] = (c.get("consent") or "").lower() in ("yes", "true", "1", "y")
                contact = ContactIn.model_validate(c)
            site = SiteIn.model_validate(site_data)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                problems.append(f"{source}:{line}: {field}: {err['msg']}")
            continue
        existing = sites.setdefault(site.site_id, site)
        if contact:
            existing.contacts.append(contact)
    if problems:
        raise SourceError(problems)
    return RegistryIn(sites=list(sites.values()))


def _check_references(registry: RegistryIn, known_zones: set[str], source: str) -> None:
    zones = known_zones | {z.zone_id for z in registry.zones}
    problems = []
    contact_ids: dict[str, str] = {}
    for site in registry.sites:
        if site.zone_id and site.zone_id not in zones:
            problems.append(f"{source}: site {site.site_id}: unknown patrol zone '{site.zone_id}'")
        for contact in site.contacts:
            other = contact_ids.setdefault(contact.contact_id, site.site_id)
            if other != site.site_id:
                problems.append(f"{source}: contact {contact.contact_id} appears at sites "
                                f"{other} and {site.site_id}")
    if problems:
        raise SourceError(problems)


async def known_zone_ids(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(Zone.zone_id))).scalars())


async def apply_registry(session: AsyncSession, registry: RegistryIn) -> dict[str, int]:
    """Upsert zones, sites and their contacts in the caller's transaction (all or nothing).

    A site's contact list is replaced by the imported one: a contact removed from
    the file is removed from the registry, so stale personal data does not linger.
    """
    for zone in registry.zones:
        await session.merge(Zone(**zone.model_dump()))
    for site in registry.sites:
        await session.merge(Site(**site.model_dump(exclude={"contacts"})))
        await session.execute(delete(Contact).where(Contact.site_id == site.site_id))
        for contact in site.contacts:
            await session.merge(Contact(site_id=site.site_id, **contact.model_dump()))
    return {"zones": len(registry.zones), "sites": len(registry.sites),
            "contacts": sum(len(s.contacts) for s in registry.sites)}


async def export_registry(session: AsyncSession) -> RegistryIn:
    zones = (await session.execute(select(Zone).order_by(Zone.zone_id))).scalars().all()
    sites = (await session.execute(select(Site).order_by(Site.site_id))).scalars().all()
    contacts = (await session.execute(select(Contact).order_by(Contact.contact_id))).scalars().all()
    by_site: dict[str, list[ContactIn]] = {}
    for c in contacts:
        by_site.setdefault(c.site_id, []).append(ContactIn(
            contact_id=c.contact_id, name=c.name, role=c.role, email=c.email, phone=c.phone,
            webhook_url=c.webhook_url, language=c.language, channels=c.channels, consent=c.consent))
    return RegistryIn(
        zones=[ZoneIn(zone_id=z.zone_id, name=z.name, dispatch_email=z.dispatch_email) for z in zones],
        sites=[SiteIn(site_id=s.site_id, name=s.name, kind=s.kind, communities=s.communities,
                      address=s.address, municipality=s.municipality, lat=s.lat, lon=s.lon,
                      zone_id=s.zone_id, floor_plan_ref=s.floor_plan_ref, notes=s.notes,
                      contacts=by_site.get(s.site_id, [])) for s in sites],
    )


def registry_yaml(registry: RegistryIn) -> str:
    return yaml.safe_dump(registry.model_dump(mode="json", exclude_none=True), sort_keys=False,
                          allow_unicode=True)
