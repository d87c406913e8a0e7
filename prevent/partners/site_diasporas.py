"""The diasporas a partner site serves (issue 21, point 6): countries (ISO 3166 alpha-2) and
regions of the diaspora map (``IN-PB``, ``IN-KL``), named on the site beside its communities.

A site names them in the registry (YAML ``diasporas: [JM, IN-PB]``, CSV column ``diasporas``
``JM; IN-PB``), in the console's site editor and through the API. What an officer writes is
read leniently and stored exactly: a country code in any case (``jm``), a country's English
name (``Jamaica``), a region id in any case (``in-pb``) or one of the region's names in the
diaspora map in force (``Punjab``, ``Kerala``) all become the code (``JM``, ``IN-PB``).
Anything else is refused where it was typed, with the closest known code.

When an alert concerns a country or region (``concern``: a natural disaster there, an attack
of national scale on a homeland, a region of the diaspora map in the evidence), the sites that
serve its diaspora are in the audience of the playbook's ``$matched`` notices even when their
communities do not match (``prevent.alerts.audience``), and the notice and the Decide box say why.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import Alert
from prevent.platform.storage.tables import DiasporaVersion

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DIASPORA_FILE = "diaspora.yaml"  # as prevent.classification.diaspora (not imported: it is heavy)
NATURAL_DISASTER = "natural_disaster"
MAX_DIASPORAS = 50
MAX_ENTRY = 80
# Two-letter CLDR territories that are no country: groupings, pseudo-locales, "unknown".
NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})


@lru_cache(maxsize=8)
def country_names(language: str = "en") -> dict[str, str]:
    """ISO 3166 alpha-2 code → the country's name in ``language`` (CLDR, via Babel; English
    when Babel does not know the language)."""
    from babel import Locale, UnknownLocaleError

    try:
        territories = Locale.parse(language).territories
    except (UnknownLocaleError, ValueError):
        territories = Locale.parse("en").territories
    return {code: name for code, name in territories.items()
            if len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES}


def is_country(code: str) -> bool:
    return code in country_names("en")


@dataclass(frozen=True)
class Region:
    id: str
    country: str
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0] if self.names else self.id


@dataclass(frozen=True)
class Places:
    """The countries and regions a site may name: every ISO country, and the regions of the
    diaspora map in force (``version``; None: the file, nothing stored)."""

    regions: dict[str, Region] = field(default_factory=dict)
    version: int | None = None

    def _by_name(self) -> dict[str, list[str]]:
        found = self.__dict__.get("_names")
        if found is None:
            found = {}
            for region in self.regions.values():
                for name in region.names:
                    ids = found.setdefault(name.casefold(), [])
                    if region.id not in ids:
                        ids.append(region.id)
            object.__setattr__(self, "_names", found)
        return found

    def normalise(self, entry: str) -> tuple[str | None, str | None]:
        """(the code, None) for what an officer typed, or (None, the problem in words)."""
        text = " ".join(str(entry).split())
        if not text:
            return None, "an empty entry"
        if len(text) > MAX_ENTRY:
            return None, f"'{text[:20]}…' is longer than {MAX_ENTRY} characters"
        upper = text.upper()
        if len(text) == 2 and text.isascii() and text.isalpha():
            if is_country(upper):
                return upper, None
            return None, (f"unknown country code '{text}': give an ISO 3166 alpha-2 code, "
                          "e.g. JM for Jamaica")
        if upper in self.regions:
            return upper, None
        folded = text.casefold()
        ids = self._by_name().get(folded)
        if ids and len(ids) == 1:
            return ids[0], None
        if ids:
            return None, (f"'{text}' names several regions of the diaspora map "
                          f"({', '.join(ids)}): give the region id")
        countries = {name.casefold(): code for code, name in country_names("en").items()}
        if folded in countries:
            return countries[folded], None
        return None, self._unknown(text)

    def _unknown(self, text: str) -> str:
        candidates = {rid.casefold(): rid for rid in self.regions}
        candidates |= {name: ids[0] for name, ids in self._by_name().items() if len(ids) == 1}
        candidates |= {name.casefold(): code for code, name in country_names("en").items()}
        close = difflib.get_close_matches(text.casefold(), list(candidates), n=1, cutoff=0.75)
        hint = f" (did you mean {candidates[close[0]]}?)" if close else ""
        where = (f"version {self.version} of the diaspora map" if self.version is not None
                 else "the diaspora map")
        return (f"unknown country or region '{text}'{hint}: give an ISO 3166 country code "
                f"(e.g. JM) or the id of a region of {where} (e.g. IN-PB; see /diaspora)")

    def normalise_all(self, entries: Iterable[str]) -> tuple[list[str], list[tuple[int, str]]]:
        """The codes (in order, each once) and the problems as (position, message)."""
        codes: list[str] = []
        problems: list[tuple[int, str]] = []
        for i, entry in enumerate(entries):
            code, problem = self.normalise(entry)
            if problem is not None:
                problems.append((i, problem))
            elif code is not None and code not in codes:
                codes.append(code)
        if len(codes) > MAX_DIASPORAS:
            problems.append((MAX_DIASPORAS, f"at most {MAX_DIASPORAS} countries and regions"))
        return codes, problems

    def name(self, code: str, language: str = "en") -> str:
        """"Jamaica" (in ``language``), "Punjab"; the code itself when unknown."""
        if code in self.regions:
            return self.regions[code].name
        return country_names(language).get(code) or country_names("en").get(code) or code

    def label(self, code: str) -> str:
        """"Jamaica (JM)", "Punjab (IN-PB)"; a region no longer in the map says so."""
        if len(code) != 2 and code not in self.regions:
            return f"{code} (not in the diaspora map in force)"
        return f"{self.name(code)} ({code})"

    def known(self, code: str) -> bool:
        return code in self.regions or (len(code) == 2 and is_country(code))


def places_from_text(text: str | None, version: int | None = None) -> Places:
    return _places(text or "", version, hashlib.sha256((text or "").encode()).hexdigest())


@lru_cache(maxsize=8)
def _places(text: str, version: int | None, _digest: str) -> Places:
    """The regions of a diaspora map's text, read without validating it again (a stored
    version was validated before it was stored). An unreadable text gives no regions."""
    try:
        data = yaml.load(text, Loader=_LOADER) if text else None  # noqa: S506 - a safe loader
    except (yaml.YAMLError, ValueError, RecursionError):
        data = None
    regions: dict[str, Region] = {}
    for raw in (data.get("regions") or ()) if isinstance(data, dict) else ():
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        names = tuple(str(n) for n in raw.get("names") or () if isinstance(n, str | int))
        regions[raw["id"]] = Region(raw["id"], str(raw.get("country") or ""), names)
    return Places(regions, version)


async def places_in_force(session: AsyncSession, playbooks_dir: Path | None) -> Places:
    """The regions of the diaspora map in force: the newest stored version, else the file."""
    row = (await session.execute(select(DiasporaVersion.version, DiasporaVersion.source)
                                 .order_by(DiasporaVersion.version.desc()).limit(1))).first()
    if row is not None:
        return places_from_text(row.source, row.version)
    path = (playbooks_dir / DIASPORA_FILE) if playbooks_dir is not None else None
    text = path.read_text(encoding="utf-8") if path is not None and path.is_file() else None
    return places_from_text(text)


# ------------------------------------------------------------------ what an alert concerns


@dataclass(frozen=True)
class Concern:
    """The countries and diaspora-map regions an alert is about, as a homeland."""

    countries: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.countries or self.regions)

    def served_by(self, diasporas: Iterable[str]) -> tuple[str, ...]:
        """Which of a site's diasporas this concerns (in the site's order)."""
        return tuple(d for d in diasporas if d in self.countries or d in self.regions)


def concern(alert: Alert) -> Concern:
    """What the alert concerns, for the diasporas sites serve:

    * every region of the diaspora map in its evidence (``region:<id>``: a disaster in
      Kerala, an attack in Nigeria's Middle Belt that names no faith);
    * every homeland in its evidence (``homeland:<CC>``: an attack of national scale);
    * its country, when it is a natural disaster there or one of the above holds.

    An attack abroad on a community the report names (a mosque in France) concerns that
    community, not the diaspora of the country it happened in: such an alert concerns none.
    """
    regions: set[str] = set()
    countries: set[str] = set()
    for evidence in alert.evidence:
        kind, _, value = evidence.rule.partition(":")
        if kind == "region" and value:
            regions.add(value)
        elif kind == "homeland" and value:
            countries.add(value)
    if alert.country and (alert.incident_type == NATURAL_DISASTER or regions or countries):
        countries.add(alert.country)
    return Concern(frozenset(countries), frozenset(regions))


def reason_text(codes: Iterable[str], places: Places | None = None, language: str = "en") -> str:
    """"serves the diaspora of Jamaica" (the console's words; ``language`` for the names)."""
    names = [(places or Places()).name(c, language) for c in codes]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"serves the diaspora of {listed}"


def served_names(codes: Iterable[str], region_names: dict[str, str], language: str) -> str:
    """The countries and regions of a notice's reason in the contact's language (CLDR's
    country names: "Jamaica", "Jamaïque"); regions by their name in the diaspora map."""
    names = [region_names.get(c) or country_names(language).get(c) or country_names("en").get(c) or c
             for c in codes]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + {"fr": " et "}.get(language, " and ") + names[-1]


def as_list(value: Any) -> list[str]:
    """A stored ``sites.diasporas`` value as a list (None on rows written before 0010)."""
    return [str(v) for v in value] if isinstance(value, list | tuple) else []
