"""The partner registry: sites, their contacts and patrol zones.

Data minimisation is a requirement: a contact is a name, a role, the ways to reach
them and their consent — nothing else. Imports validate every row first and then
apply all or nothing.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.platform.storage.tables import Contact, RosterEntry, Site, Zone
from prevent.platform.yamlsource import SourceError, line_of, load_yaml, validation_problems

Channel = Literal["email", "sms", "webhook"]
SiteKind = Literal["place_of_worship", "community_centre", "school", "cultural_centre", "other"]


MAX_URL = 2000
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\\\u2028\u2029]")  # controls, spaces, backslash
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def check_webhook_url(url: str) -> str:
    """A partner's webhook URL, parsed (not matched against a prefix); returns it unchanged
    or raises ValueError saying what is wrong. Checked at every edge (registry edits, imports,
    the API: ``ContactIn``) and again before each send.

    Only http(s) with a host, no credentials, a valid port, no spaces, control characters or
    backslashes (a header-injection or parser-confusion vector), and a host that is a domain
    name or an IP address in its one standard form. A host whose last label is a number is
    read as an IPv4 address by URL parsers and resolvers alike (``0177.0.0.1``, ``0x7f.1``,
    ``127.1`` and ``2130706433`` all mean 127.0.0.1): only four plain decimal parts pass.
    Whether the address is public is the connect-time guard's question (``prevent.platform.netguard``).
    """
    if len(url) > MAX_URL:
        raise ValueError(f"a webhook URL is at most {MAX_URL} characters")
    if _URL_FORBIDDEN.search(url):
        raise ValueError("a webhook URL may not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError("a webhook URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError("a webhook URL may not carry credentials (user@ or user:password@)")
    host = parts.hostname or ""
    if not host:
        raise ValueError("a webhook URL needs a host")
    if port == 0:
        raise ValueError("port 0 is not a valid port")
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"not a valid IPv6 address: {host}") from exc
    else:
        # Judged as sent: IDNA maps the ideographic and full-width dots and digits to ASCII
        # ("0177。0。0。1" is sent as 0177.0.0.1).
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"not a valid host name: {host}") from exc
        labels = ascii_host.removesuffix(".").split(".")
        if _NUMERIC_LABEL.fullmatch(labels[-1]):
            _standard_ipv4(host, host)
        elif not all(_LABEL.fullmatch(label) for label in labels):
            raise ValueError(f"not a valid host name: {host}")
    try:
        sent = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"not a valid URL: {exc}") from exc
    # httpx has its own IDNA codec: what it will connect to must pass the same rule.
    if not parts.netloc.startswith("[") and _NUMERIC_LABEL.fullmatch(
            sent.removesuffix(".").rsplit(".", 1)[-1]):
        _standard_ipv4(host, sent)
    return url


def _standard_ipv4(host: str, seen: str) -> None:
    """``seen`` (``host`` as read or as sent) reads as an IPv4 address: only its four-decimal
    form, exactly as typed, is allowed."""
    try:
        canonical = str(ipaddress.IPv4Address(seen.removesuffix(".")))
    except ValueError:
        canonical = None
    if canonical != host or seen != host:
        raise ValueError(f"the host {host} reads as an IPv4 address but is not in its "
                         "standard form (octal, hexadecimal or shortened forms are refused):"
                         " write four decimal numbers, e.g. 192.0.2.10")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, v: object) -> object:
        """No NUL character (U+0000) in any text: PostgreSQL cannot store one (an import or
        an edit holding one failed with a server error), and no name or address needs it."""
        if any(isinstance(t, str) and "\x00" in t for t in (v if isinstance(v, list) else [v])):
            raise ValueError("may not contain a NUL character (U+0000)")
        return v


class ZoneIn(Strict):
    zone_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1)
    dispatch_email: EmailStr | None = None


PHONE = re.compile(r"^\+?[0-9 ()-]{7,20}$")
PHONE_HELP = ("not a phone number: use 7 to 20 digits, spaces, dashes or brackets, with + and the "
              "country code first, e.g. +1 613 555 0100")


class ContactIn(Strict):
    contact_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    role: str = ""
    email: EmailStr | None = None
    # Checked by ``_phone`` (a sentence people can act on, not the pattern); the pattern
    # stays in the JSON schema for API clients.
    phone: Annotated[str, WithJsonSchema({"type": "string", "pattern": PHONE.pattern})] | None = None
    webhook_url: str | None = Field(default=None, max_length=MAX_URL)
    webhook_format: Literal["json", "cap"] = "json"
    language: Literal["en", "fr"] = "en"
    channels: list[Channel] = ["email"]
    consent: bool = False

    @field_validator("channels", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return [c.strip() for c in v.split(";") if c.strip()] if isinstance(v, str) else v

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        return None if v is None else check_webhook_url(v)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is not None and not PHONE.fullmatch(v):
            raise ValueError(PHONE_HELP)
        return v

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
    # The diasporas the site serves: ISO 3166 alpha-2 countries and diaspora-map region ids
    # (``[JM, IN-PB]``). Checked against the map in force at each edge, where names and any
    # case are read as their code (``prevent.partners.site_diasporas``).
    diasporas: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        default=[], max_length=50)
    contacts: list[ContactIn] = []

    @field_validator("communities", "diasporas", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return [c.strip() for c in v.split(";") if c.strip()] if isinstance(v, str) else v


class RosterEntryIn(Strict):
    """One escalation contact on the duty roster: level 1 is told first, level 2 next."""

    entry_id: str = Field(min_length=1, max_length=100)
    level: Literal[1, 2]
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr


class RegistryIn(Strict):
    zones: list[ZoneIn] = []
    sites: list[SiteIn] = []
    # None: the file says nothing about the roster, so an import leaves it as it is.
    roster: list[RosterEntryIn] | None = None


CSV_SITE_FIELDS = ("site_id", "site_name", "kind", "communities", "address", "municipality", "lat",
                   "lon", "zone_id", "floor_plan_ref", "notes", "diasporas")
CSV_CONTACT_FIELDS = ("contact_id", "contact_name", "role", "email", "phone", "webhook_url",
                      "webhook_format", "language", "channels", "consent")


# Where each site (and roster entry) starts in the file, so a cross-row problem names a line too.
Lines = dict[str, int]
# More checks of a file (text, the rows that validated, their lines) -> problems; see
# ``prevent.partners.checks.parse``.
ExtraChecks = Callable[[str, RegistryIn, Lines], list[str]]


def parse_registry(path: Path, known_zones: Iterable[str] = (), *, source: str | None = None,
                   extra: ExtraChecks | None = None) -> RegistryIn:
    """Validate a YAML or CSV registry file; SourceError lists every problem of every row
    with its line, in line order, at once. ``source``: the file's name in the messages (the
    name the user knows, e.g. of an uploaded file; default ``path``); ``extra``: more checks,
    run on the rows that validated even when others did not."""
    source = source or str(path)
    text = path.read_text(encoding="utf-8-sig")
    problems: list[str] = []
    if path.suffix.lower() == ".csv":
        registry, lines, problems = _parse_csv(text, source)
    else:
        try:
            registry, lines = _parse_yaml(text, source)
        except SourceError as exc:
            if extra is None:
                raise
            registry, lines, problems = RegistryIn(), {}, list(exc.problems)
    # Cross-row checks run on the valid rows too, so one pass reports every bad row.
    problems += reference_problems(registry, set(known_zones), source, lines)
    if extra is not None:
        problems += extra(text, registry, lines)
    if problems:
        raise SourceError(in_line_order(problems, source))
    return registry


def in_line_order(problems: list[str], source: str) -> list[str]:
    """``source:LINE: ...`` problems sorted by line (stable: a row's problems keep their order)."""
    prefix = re.compile(rf"^{re.escape(source)}:(\d+):")

    def line(problem: str) -> int:
        match = prefix.match(problem)
        return int(match.group(1)) if match else 0

    return sorted(dict.fromkeys(problems), key=line)


def _parse_yaml(text: str, source: str) -> tuple[RegistryIn, Lines]:
    data, node = load_yaml(text, source)
    try:
        registry = RegistryIn.model_validate(data or {})
    except ValidationError as exc:
        raise SourceError(validation_problems(exc, node, source)) from exc
    lines = {s.site_id: line_of(node, ["sites", i]) for i, s in enumerate(registry.sites)}
    lines |= {f"roster:{r.entry_id}": line_of(node, ["roster", i])
              for i, r in enumerate(registry.roster or ())}
    return registry, lines


def _blank_to_none(row: dict[str, str]) -> dict[str, str | None]:
    return {k: (v if v not in ("", None) else None) for k, v in row.items()}


def csv_rows(reader: csv.DictReader[str], source: str, problems: list[str]) -> Iterator[dict[str, Any]]:
    """The rows of ``reader``; a line the csv module cannot read (a field over its limit of
    131,072 characters, say) ends the rows, with a problem naming the line."""
    try:
        yield from reader
    except csv.Error as exc:
        # line_num counts the lines read before the one that failed.
        problems.append(f"{source}:{reader.line_num + 1}: not readable as CSV: {exc}")


def _parse_csv(text: str, source: str) -> tuple[RegistryIn, Lines, list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = set(reader.fieldnames or ())
    except csv.Error as exc:
        raise SourceError([f"{source}:1: not readable as CSV: {exc}"]) from None
    missing = {"site_id", "site_name", "communities", "municipality"} - header
    if missing:
        raise SourceError([f"{source}:1: header lacks columns: {', '.join(sorted(missing))}"])
    problems: list[str] = []
    sites: dict[str, SiteIn] = {}
    lines: Lines = {}
    for row in csv_rows(reader, source, problems):
        line = reader.line_num
        values = _blank_to_none(row)
        # The site's and the contact's columns are checked apart: every problem of the row at once.
        site_data = {k: values.get(k) for k in CSV_SITE_FIELDS if values.get(k) is not None}
        site_data["name"] = site_data.pop("site_name", None)
        site = _csv_model(SiteIn, site_data, "site_name", source, line, problems)
        contact = None
        if values.get("contact_id"):
            c: dict[str, str | bool | None] = {k: values.get(k) for k in CSV_CONTACT_FIELDS
                                               if values.get(k) is not None}
            c["name"] = c.pop("contact_name", None)
            c["consent"] = (values.get("consent") or "").lower() in ("yes", "true", "1", "y")
            contact = _csv_model(ContactIn, c, "contact_name", source, line, problems)
        if site is None:
            continue
        existing = sites.setdefault(site.site_id, site)
        lines.setdefault(site.site_id, line)
        if contact:
            existing.contacts.append(contact)
    return RegistryIn(sites=list(sites.values())), lines, problems


_CsvModel = TypeVar("_CsvModel", SiteIn, ContactIn)


def _csv_model(model: type[_CsvModel], data: dict[str, Any], name_column: str,
               source: str, line: int, problems: list[str]) -> _CsvModel | None:
    """``model`` from one CSV row's columns, or None with its problems added, each naming
    the CSV column (``site_name``/``contact_name`` for the model's ``name``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            column = name_column if field == "name" else field
            problems.append(f"{source}:{line}: {column}: {err['msg'].removeprefix('Value error, ')}")
        return None


def check_references(registry: RegistryIn, known_zones: set[str], source: str) -> None:
    problems = reference_problems(registry, known_zones, source)
    if problems:
        raise SourceError(problems)


def reference_problems(registry: RegistryIn, known_zones: set[str], source: str,
                       lines: Lines | None = None) -> list[str]:
    lines = lines or {}

    def at(key: str) -> str:
        return f"{source}:{lines[key]}" if key in lines else source

    zones = known_zones | {z.zone_id for z in registry.zones}
    problems = []
    contact_ids: dict[str, str] = {}
    for site in registry.sites:
        if site.zone_id and site.zone_id not in zones:
            problems.append(f"{at(site.site_id)}: site {site.site_id}: unknown patrol zone "
                            f"'{site.zone_id}'")
        for contact in site.contacts:
            other = contact_ids.setdefault(contact.contact_id, site.site_id)
            if other != site.site_id:
                problems.append(f"{at(site.site_id)}: contact {contact.contact_id} appears at sites "
                                f"{other} and {site.site_id}")
    roster_ids: set[str] = set()
    for entry in registry.roster or ():
        if entry.entry_id in roster_ids:
            problems.append(f"{at('roster:' + entry.entry_id)}: roster entry {entry.entry_id} "
                            "appears twice")
        roster_ids.add(entry.entry_id)
    return problems


async def known_zone_ids(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(Zone.zone_id))).scalars())


async def apply_registry(session: AsyncSession, registry: RegistryIn) -> dict[str, int]:
    """Upsert zones, sites and their contacts in the caller's transaction (all or nothing).

    A site's contact list is replaced by the imported one: a contact removed from
    the file is removed from the registry, so stale personal data does not linger.
    A contact's own choices (language, channels, opt-out; see ``own_choice``) outlive
    the import; ``own_choices_kept`` counts the contacts whose imported values they overrode.
    """
    for zone in registry.zones:
        await session.merge(Zone(**zone.model_dump()))
    kept = 0
    for site in registry.sites:
        await session.merge(Site(**site.model_dump(exclude={"contacts"})))
        chosen = {row.contact_id: row for row in (await session.execute(
            select(Contact.contact_id, Contact.language, Contact.channels, Contact.consent,
                   Contact.own_choice_at)
            .where(Contact.site_id == site.site_id, Contact.own_choice_at.is_not(None)))).all()}
        await session.execute(delete(Contact).where(Contact.site_id == site.site_id))
        for contact in site.contacts:
            values = contact.model_dump()
            if (choice := chosen.get(contact.contact_id)) is not None:
                values = own_choice(values, choice)
                kept += any(values[k] != getattr(contact, k) for k in ("language", "channels", "consent"))
            await session.merge(Contact(site_id=site.site_id, **values))
    if registry.roster is not None:
        await replace_roster(session, registry.roster)
    return {"zones": len(registry.zones), "sites": len(registry.sites),
            "contacts": sum(len(s.contacts) for s in registry.sites),
            "roster": len(registry.roster or ()), "own_choices_kept": kept}


def own_choice(imported: dict[str, Any], choice: Any) -> dict[str, Any]:
    """An imported contact with the choices the contact made themself: their language; their
    channels that the import still gives an address for; consent only if both the import and
    the contact give it (an officer may withdraw it; giving it back takes ``renew_consent``)."""
    addresses = {"email": imported["email"], "sms": imported["phone"], "webhook": imported["webhook_url"]}
    channels = [c for c in choice.channels if addresses.get(c)]
    return imported | {"language": choice.language, "channels": channels or imported["channels"],
                       "consent": imported["consent"] and choice.consent,
                       "own_choice_at": choice.own_choice_at}


async def own_choices(session: AsyncSession, site_id: str) -> dict[str, datetime]:
    """The site's contacts who set their own preferences, and when (they override edits)."""
    rows = (await session.execute(select(Contact.contact_id, Contact.own_choice_at).where(
        Contact.site_id == site_id, Contact.own_choice_at.is_not(None)))).all()
    return {contact_id: at for contact_id, at in rows if at is not None}


async def renew_consent(session: AsyncSession, contact_id: str, *, note: str, actor: str) -> None:
    """A contact who opted out gave consent again (outside the system, e.g. a signed form):
    consent on, and their earlier own choices no longer override the registry's values.
    Audited with ``note``, which says where the consent is recorded."""
    if not note.strip():
        raise LookupError("say where the new consent is recorded (--note)")
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise LookupError(f"no contact {contact_id} in the registry")
    before = {"consent": contact.consent, "own_choice": contact.own_choice_at is not None}
    contact.consent, contact.own_choice_at = True, None
    await audit.record(session, actor=actor, action="contact.consent_renewed", subject=contact_id,
                       before=before, after={"consent": True, "own_choice": False}, reason=note)


async def replace_roster(session: AsyncSession, roster: list[RosterEntryIn]) -> None:
    """The roster is small and ordered: replace it whole rather than merge entries."""
    await session.execute(delete(RosterEntry))
    await session.flush()
    positions: dict[int, int] = {}
    for entry in roster:
        position = positions[entry.level] = positions.get(entry.level, -1) + 1
        session.add(RosterEntry(entry_id=entry.entry_id, level=entry.level, position=position,
                                name=entry.name, email=str(entry.email)))


async def roster(session: AsyncSession) -> list[RosterEntryIn]:
    rows = (await session.execute(select(RosterEntry).order_by(RosterEntry.level,
                                                               RosterEntry.position))).scalars()
    # Validated from a dict: ``level`` is stored as a plain integer, checked here to be 1 or 2.
    return [RosterEntryIn.model_validate({"entry_id": r.entry_id, "level": r.level, "name": r.name,
                                          "email": r.email})
            for r in rows]


async def upsert_site(session: AsyncSession, site: SiteIn) -> None:
    """One site and its contacts (replacing them); the zone must exist."""
    check_references(RegistryIn(sites=[site]), await known_zone_ids(session), f"site {site.site_id}")
    other = (await session.execute(select(Contact.contact_id, Contact.site_id).where(
        Contact.contact_id.in_([c.contact_id for c in site.contacts]),
        Contact.site_id != site.site_id))).first() if site.contacts else None
    if other is not None:
        raise SourceError([f"site {site.site_id}: contact {other[0]} belongs to site {other[1]}"])
    await apply_registry(session, RegistryIn(sites=[site]))


async def delete_site(session: AsyncSession, site_id: str) -> bool:
    """Remove a site and, with it, its contacts' personal data."""
    await session.execute(delete(Contact).where(Contact.site_id == site_id))
    result = await session.execute(delete(Site).where(Site.site_id == site_id))
    # A DELETE's result is a CursorResult, typed by SQLAlchemy as the plain Result (no rowcount).
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted > 0


async def upsert_zone(session: AsyncSession, zone: ZoneIn) -> None:
    await session.merge(Zone(**zone.model_dump()))


async def delete_zone(session: AsyncSession, zone_id: str) -> bool:
    users = (await session.execute(select(Site.site_id).where(Site.zone_id == zone_id))).scalars().all()
    if users:
        raise SourceError([f"zone {zone_id} is used by sites: {', '.join(users)}"])
    result = await session.execute(delete(Zone).where(Zone.zone_id == zone_id))
    # A DELETE's result is a CursorResult, typed by SQLAlchemy as the plain Result (no rowcount).
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted > 0


async def export_registry(session: AsyncSession) -> RegistryIn:
    zones = (await session.execute(select(Zone).order_by(Zone.zone_id))).scalars().all()
    sites = (await session.execute(select(Site).order_by(Site.site_id))).scalars().all()
    contacts = (await session.execute(select(Contact).order_by(Contact.contact_id))).scalars().all()
    by_site: dict[str, list[ContactIn]] = {}
    for c in contacts:
        # As stored, not validated again: a contact saved before today's checks (say a webhook
        # URL they now refuse) must stay readable and exportable, so that it can be corrected.
        by_site.setdefault(c.site_id, []).append(ContactIn.model_construct(
            contact_id=c.contact_id, name=c.name, role=c.role, email=c.email, phone=c.phone,
            webhook_url=c.webhook_url, webhook_format=c.webhook_format, language=c.language,
            channels=c.channels, consent=c.consent))
    return RegistryIn(
        zones=[ZoneIn(zone_id=z.zone_id, name=z.name, dispatch_email=z.dispatch_email) for z in zones],
        # Validated from a dict: ``kind`` is stored as plain text, checked here to be a SiteKind.
        sites=[SiteIn.model_validate({
            "site_id": s.site_id, "name": s.name, "kind": s.kind, "communities": s.communities,
            "address": s.address, "municipality": s.municipality, "lat": s.lat, "lon": s.lon,
            "zone_id": s.zone_id, "floor_plan_ref": s.floor_plan_ref, "notes": s.notes,
            "diasporas": s.diasporas or [], "contacts": by_site.get(s.site_id, [])})
            for s in sites],
        roster=await roster(session),
    )


def registry_yaml(registry: RegistryIn) -> str:
    return yaml.safe_dump(registry.model_dump(mode="json", exclude_none=True), sort_keys=False,
                          allow_unicode=True)
