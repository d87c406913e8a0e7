"""The diaspora map (``playbooks/diaspora.yaml``): which local communities are linked to
which countries and regions abroad, kept by engagement officers as data.

A natural disaster in a linked country or region concerns its linked communities; a
region's majority faith is the faith of an attack on worshippers there that names none
(Nigeria's north and Middle Belt, Indian states). Validated strictly: unknown keys,
unknown community ids and malformed codes are ``file:line`` errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import ahocorasick
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from prevent.classification.lexicon import Lexicon, _node_line, parse_text
from prevent.classification.matcher import fold_term

log = logging.getLogger("prevent.classification")

DIASPORA_FILE = "diaspora.yaml"

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
CommunityId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=80)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountryLink(_Strict):
    country: CountryCode
    communities: tuple[CommunityId, ...] = Field(min_length=1)
    note: str = ""


class RegionLink(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9-]+$")]
    country: CountryCode
    names: tuple[Name, ...] = Field(min_length=1)
    communities: tuple[CommunityId, ...] = ()
    majority_faith: CommunityId | None = None
    # Deadly attacks there that name no faith are taken to target the majority faith (the
    # Middle Belt's farming villages, Kurram's Shia): officers set it where that holds.
    attacks_target_majority: bool = False
    # Which violent types ``attacks_target_majority`` covers (empty: every one). Missile and
    # rocket strikes on the Arab towns of Israel hit their Muslim majority; a shooting there is
    # as likely a crime as an attack on a community, so those towns list only [bombing].
    attack_types: tuple[Literal["armed_attack", "bombing", "arson", "riot", "hate_crime"], ...] = ()
    # The faith of a religious gathering attacked there that names no faith, where it differs
    # from the majority faith (Jammu and Kashmir is majority Muslim; the pilgrims attacked
    # there, on the way to Amarnath or Vaishno Devi, are Hindus).
    gathering_faith: CommunityId | None = None
    # The faith of people from elsewhere (tourists, workers from other states) attacked
    # there, where militants single them out as such (Jammu and Kashmir: Hindus, Pahalgam
    # 2025). Not a place of worship; never the majority faith by default.
    outsider_faith: CommunityId | None = None
    # The communities a riot or arson there that names none sets against each other (the
    # Hindu-Muslim flashpoints of India: Murshidabad, Nuh, North East Delhi).
    riot_faiths: tuple[CommunityId, ...] = ()
    note: str = ""


class DiasporaFile(_Strict):
    version: Literal[1]
    countries: tuple[CountryLink, ...] = ()
    regions: tuple[RegionLink, ...] = ()


@dataclass(frozen=True)
class DiasporaMap:
    """The map, ready for the classifier: communities per country, and regions by name."""

    by_country: dict[str, tuple[str, ...]]
    regions: tuple[tuple[RegionLink, tuple[str, ...]], ...]  # each region and its folded names

    @classmethod
    def empty(cls) -> DiasporaMap:
        return cls({}, ())

    @classmethod
    def build(cls, data: DiasporaFile) -> DiasporaMap:
        by_country: dict[str, set[str]] = {}
        for link in data.countries:
            by_country.setdefault(link.country, set()).update(link.communities)
        regions = tuple((r, tuple(k for k in (fold_term(n) for n in r.names) if k)) for r in data.regions)
        return cls({c: tuple(sorted(ids)) for c, ids in by_country.items()}, regions)

    def __getstate__(self) -> dict[str, object]:
        # The names' automaton (built on first use) is not sent to a preparation worker.
        return {k: v for k, v in self.__dict__.items() if k != "_automaton"}

    @cached_property
    def region_countries(self) -> frozenset[str]:
        """The countries the map has regions of."""
        return frozenset(region.country for region, _ in self.regions)

    def regions_in(self, folded_texts: Iterable[str], country: str | None
                   ) -> list[tuple[RegionLink, int, int, int]]:
        """The regions (of ``country``, when known) that the folded texts name: each with
        the field it is named in and the span of the name."""
        found: list[tuple[RegionLink, int, int, int]] = []
        if country is not None and country not in self.region_countries:
            return found  # the map has no region there: no name to look for
        # Where each name first occurs in each field: one automaton pass per field, not a
        # search per name (hundreds of names).
        automaton = self.__dict__.get("_automaton")
        if automaton is None:
            automaton = ahocorasick.Automaton()
            for _, names in self.regions:
                for name in names:
                    automaton.add_word(f" {name} ", name)
            if len(automaton):
                automaton.make_automaton()
            object.__setattr__(self, "_automaton", automaton)
        firsts: list[dict[str, int]] = []
        for text in folded_texts:
            first: dict[str, int] = {}
            if len(automaton):
                for last, name in automaton.iter(f" {text} "):
                    first.setdefault(name, last - len(name) - 1)  # reported in text order
            firsts.append(first)
        if not any(firsts):
            return found  # most texts name no region
        for region, names in self.regions:
            if country is not None and region.country != country:
                continue
            for name in names:
                for f, first in enumerate(firsts):
                    i = first.get(name)
                    if i is not None:
                        found.append((region, f, i, i + len(name)))
                        break
                else:
                    continue
                break
        return found


def load_diaspora_errors(path: Path, known: set[str]) -> tuple[DiasporaFile | None, list[str]]:
    """The validated file and every problem as ``file:line: message`` (none when valid)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{path}:0: cannot read: {exc.strerror or exc}"]
    return diaspora_errors(text, str(path), known)


def diaspora_errors(text: str, source: str, known: set[str]) -> tuple[DiasporaFile | None, list[str]]:
    """``load_diaspora_errors`` of a text (a stored version, a draft in the editor): the
    problems are ``source:line: message``, the lines those of ``text``."""
    data, node, errors = _parse_text(text, source)
    if data is None or node is None:
        return None, errors

    def err(loc: tuple[int | str, ...], msg: str) -> None:
        errors.append(f"{source}:{_node_line(node, loc)}: {'.'.join(str(p) for p in loc)}: {msg}")

    seen: set[str] = set()
    for i, link in enumerate(data.countries):
        if link.country in seen:
            err(("countries", i, "country"), f"{link.country} is listed twice")
        seen.add(link.country)
        for j, cid in enumerate(link.communities):
            if cid not in known:
                err(("countries", i, "communities", j), f"unknown community {cid!r}")
    ids: set[str] = set()
    for i, region in enumerate(data.regions):
        if region.id in ids:
            err(("regions", i, "id"), f"region {region.id} is listed twice")
        ids.add(region.id)
        if not region.id.startswith(f"{region.country}-"):
            err(("regions", i, "id"), f"a region of {region.country} has an id starting {region.country}-")
        for j, cid in enumerate(region.communities):
            if cid not in known:
                err(("regions", i, "communities", j), f"unknown community {cid!r}")
        if region.majority_faith is not None and region.majority_faith not in known:
            err(("regions", i, "majority_faith"), f"unknown community {region.majority_faith!r}")
        if region.gathering_faith is not None and region.gathering_faith not in known:
            err(("regions", i, "gathering_faith"), f"unknown community {region.gathering_faith!r}")
        if region.outsider_faith is not None and region.outsider_faith not in known:
            err(("regions", i, "outsider_faith"), f"unknown community {region.outsider_faith!r}")
        for j, cid in enumerate(region.riot_faiths):
            if cid not in known:
                err(("regions", i, "riot_faiths", j), f"unknown community {cid!r}")
        if region.attacks_target_majority and region.majority_faith is None:
            err(("regions", i, "attacks_target_majority"), "needs a majority_faith")
    return (data if not errors else None), errors


def _parse_text(text: str, source: str) -> tuple[DiasporaFile | None, yaml.Node | None, list[str]]:
    return parse_text(text, source, DiasporaFile)


def load_diaspora(directory: Path, lexicon: Lexicon) -> DiasporaMap:
    """The map in ``directory``, or an empty one (its errors logged) when it is missing or
    invalid: the links of communities.yaml still hold."""
    path = directory / DIASPORA_FILE
    if not path.is_file():
        return DiasporaMap.empty()
    data, errors = load_diaspora_errors(path, {c.id for c in lexicon.communities.communities})
    for error in errors:
        log.error("diaspora map left out: %s", error)
    return DiasporaMap.build(data) if data is not None else DiasporaMap.empty()


def dump(data: DiasporaFile) -> str:
    """The map as YAML (for ``prevent diaspora show``)."""
    return yaml.safe_dump(data.model_dump(exclude_defaults=True), allow_unicode=True, sort_keys=False)
