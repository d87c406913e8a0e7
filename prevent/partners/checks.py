"""Checks of a partner registry beyond its schema (issue 22, defect 5), shared by the CSV
import (console and ``prevent partners import``) and the console's site editor:

* every site community must be one the lexicon knows (``playbooks/communities.yaml``): a
  site of community ``muslin`` would match no alert and never be notified;
* a CSV row that fills contact columns (email, phone, ...) without a ``contact_id`` would
  have its contact dropped: it is refused, naming its line;
* every diaspora a site serves must be an ISO 3166 country or a region of the diaspora map in
  force (``prevent.partners.site_diasporas``); what passes is stored as its code (``Punjab`` → ``IN-PB``).
"""

from __future__ import annotations

import csv
import difflib
import io
from functools import lru_cache
from pathlib import Path

from prevent.classification.lexicon import load_lexicon
from prevent.partners import registry
from prevent.partners.registry import CSV_CONTACT_FIELDS, RegistryIn, SiteIn
from prevent.partners.site_diasporas import DIASPORA_FILE, Places, places_from_text
from prevent.platform.yamlsource import SourceError, line_of, load_yaml

CONTACT_DATA = tuple(f for f in CSV_CONTACT_FIELDS if f not in ("contact_id", "consent"))


@lru_cache(maxsize=4)
def known_communities(playbooks_dir: Path) -> frozenset[str]:
    return frozenset(c.id for c in load_lexicon(playbooks_dir).communities.communities)


def community_problem(community: str, known: frozenset[str]) -> str | None:
    if community in known:
        return None
    close = difflib.get_close_matches(community.casefold(), sorted(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown community '{community}'{hint}; known: see playbooks/communities.yaml"


def community_problems(registry: RegistryIn, known: frozenset[str], source: str,
                       lines: dict[str, int] | None = None) -> list[str]:
    problems = []
    for site in registry.sites:
        where = f"{source}:{lines[site.site_id]}" if lines and site.site_id in lines else source
        problems += [f"{where}: site {site.site_id}: {p}" for c in site.communities
                     if (p := community_problem(c, known))]
    return problems


def site_lines(text: str) -> dict[str, int]:
    """The first CSV line of each site id (for messages about a whole site)."""
    reader = csv.DictReader(io.StringIO(text))
    lines: dict[str, int] = {}
    for row in registry.csv_rows(reader, "", []):  # an unreadable line: parse reports it
        if row.get("site_id"):
            lines.setdefault(row["site_id"].strip(), reader.line_num)
    return lines


def orphan_contact_problems(text: str, source: str) -> list[str]:
    """CSV rows with contact data but no contact_id: the contact would be dropped silently."""
    reader = csv.DictReader(io.StringIO(text))
    problems: list[str] = []
    for row in registry.csv_rows(reader, source, problems):
        filled = [f for f in CONTACT_DATA if (row.get(f) or "").strip()]
        if filled and not (row.get("contact_id") or "").strip():
            problems.append(f"{source}:{reader.line_num}: contact_id: this row has "
                            f"{', '.join(filled)} but no contact_id; the contact would be dropped "
                            "(give it a contact_id)")
    return problems


def file_problems(path: Path, registry: RegistryIn, playbooks_dir: Path, source: str) -> list[str]:
    """Every problem of an imported file beyond what ``parse_registry`` checks."""
    text = path.read_text(encoding="utf-8-sig")
    is_csv = path.suffix.lower() == ".csv"
    problems = orphan_contact_problems(text, source) if is_csv else []
    return problems + community_problems(registry, known_communities(playbooks_dir), source,
                                         site_lines(text) if is_csv else None)


def csv_community_problems(text: str, known: frozenset[str], source: str) -> list[str]:
    """Unknown communities in a CSV's rows, read from the text: also in rows whose other
    columns did not validate (so one upload reports them with everything else). Once per
    site and community, at the site's first line."""
    reader = csv.DictReader(io.StringIO(text))
    seen: set[tuple[str, str]] = set()
    problems: list[str] = []
    for row in registry.csv_rows(reader, source, problems):
        site_id = (row.get("site_id") or "").strip()
        for community in (c.strip() for c in (row.get("communities") or "").split(";")):
            if not community or (site_id, community) in seen:
                continue
            seen.add((site_id, community))
            if problem := community_problem(community, known):
                problems.append(f"{source}:{reader.line_num}: site {site_id}: {problem}")
    return problems


def _entries(value: object) -> list[tuple[int | None, str]]:
    """A site's ``diasporas`` as written: (position in a list, or None for a ';' string, entry).
    Entries that are no text are the schema's to report."""
    if isinstance(value, str):
        return [(None, e.strip()) for e in value.split(";") if e.strip()]
    if isinstance(value, list):
        return [(j, e) for j, e in enumerate(value) if isinstance(e, str)]
    return []


def yaml_diaspora_problems(text: str, places: Places, source: str) -> list[str]:
    """Unknown countries and regions in a YAML registry's sites, each at its own line; read
    from the text, so sites whose other fields did not validate are checked too."""
    try:
        data, node = load_yaml(text, source)
    except SourceError:
        return []  # parse_registry reports the syntax error
    sites = data.get("sites") if isinstance(data, dict) else None
    problems: list[str] = []
    for i, raw in enumerate(sites if isinstance(sites, list) else ()):
        if not isinstance(raw, dict):
            continue
        for j, entry in _entries(raw.get("diasporas")):
            if (problem := places.normalise(entry)[1]) is not None:
                loc: list[str | int] = ["sites", i, "diasporas"]
                if j is not None:
                    loc.append(j)
                problems.append(f"{source}:{line_of(node, loc)}: site {raw.get('site_id')}: "
                                f"diasporas: {problem}")
    return problems


def csv_diaspora_problems(text: str, places: Places, source: str) -> list[str]:
    """Unknown countries and regions in a CSV's ``diasporas`` column (entries separated by
    ';'), in every row, once per site and entry, at the row's line."""
    reader = csv.DictReader(io.StringIO(text))
    seen: set[tuple[str, str]] = set()
    problems: list[str] = []
    for row in registry.csv_rows(reader, source, problems):
        site_id = (row.get("site_id") or "").strip()
        for _, entry in _entries(row.get("diasporas") or ""):
            if (site_id, entry) in seen:
                continue
            seen.add((site_id, entry))
            if (problem := places.normalise(entry)[1]) is not None:
                problems.append(f"{source}:{reader.line_num}: site {site_id}: diasporas: {problem}")
    return problems


def site_with_codes(site: SiteIn, places: Places) -> tuple[SiteIn, list[tuple[int, str]]]:
    """``site`` with its diasporas as codes (``Punjab`` → ``IN-PB``, ``jm`` → ``JM``, each
    once), and the problems as (position in the list, message)."""
    codes, problems = places.normalise_all(site.diasporas)
    return (site if codes == site.diasporas else site.model_copy(update={"diasporas": codes})), problems


def with_codes(parsed: RegistryIn, places: Places) -> RegistryIn:
    """Every site's diasporas as codes (the entries were checked: unknown ones are dropped)."""
    sites = [site_with_codes(site, places)[0] for site in parsed.sites]
    return parsed.model_copy(update={"sites": sites})


def file_places(playbooks_dir: Path) -> Places:
    """The regions of the diaspora map file (when the map in force is not at hand)."""
    path = playbooks_dir / DIASPORA_FILE
    return places_from_text(path.read_text(encoding="utf-8") if path.is_file() else None)


def parse(path: Path, known_zones: set[str], playbooks_dir: Path, *,
          source: str | None = None, places: Places | None = None) -> RegistryIn:
    """A registry file parsed and checked as an import needs it: the schema of every row,
    references, unknown communities, unknown diasporas and contact columns without a contact
    id, every problem of the file in one ``SourceError`` (line order), so one upload shows all
    there is to fix. ``source``: the file's name in the messages (an upload's own name);
    ``places``: the countries and regions of the diaspora map in force (default: the file's)."""
    known = known_communities(playbooks_dir)
    places = places if places is not None else file_places(playbooks_dir)
    is_csv = path.suffix.lower() == ".csv"
    name = source or str(path)

    def extra(text: str, parsed: RegistryIn, lines: dict[str, int]) -> list[str]:
        if is_csv:
            return (orphan_contact_problems(text, name) + csv_community_problems(text, known, name)
                    + csv_diaspora_problems(text, places, name))
        return community_problems(parsed, known, name, lines) + yaml_diaspora_problems(text, places, name)

    # registry.parse_registry looked up at call time (tests watch where it runs).
    return with_codes(registry.parse_registry(path, known_zones, source=name, extra=extra), places)


def counts_text(counts: dict[str, int]) -> str:
    """``{"sites": 3, "contacts": 4}`` as people read it: "3 sites, 4 contacts"."""
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
