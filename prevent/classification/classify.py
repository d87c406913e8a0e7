"""From a title and summary to communities, incident type, severity and evidence.

The rules, in order (docs/CLASSIFICATION.md explains them for lexicon editors):

1. One scan per field finds community, type, harm, escalation, aftermath and
   country terms; negative contexts have already cancelled what they cover, and a
   faith's word inside another faith's phrase ("Hindu priest") is not counted.
2. A community word directly followed by a perpetrator head ("Buddhist mobs",
   "Israeli forces", "the Somali capital") is dropped: it names who acted, not who was
   targeted.
3. A community is a *target* only when a type or harm word sits in the same
   sentence; a community merely mentioned elsewhere is ignored, and so is one named
   only inside a cause clause ("weeks after the Easter bombings").
4. The type is the best weighted score over the type words of the linking
   sentences (title words count 1.5x); ties go to the precedence list. Type words
   marked ``needs_context`` ("found dead") count only when a hate-context word is present.
5. Natural disasters take their communities from the affected country's
   diaspora (``home_countries``), not from words in the text.
6. Severity is the highest of: the chosen type's words, harm and escalation
   words, casualty figures, CAP severity; an aftermath word in the title caps it, and
   so does an item whose only incident words sit in background sentences ("... was
   demolished by mobs in 1992").
7. An attack on worshippers, pilgrims or a shrine that names no faith takes the
   faith of its country when ``majority_faith`` in communities.yaml lists one.

Hot path: one Aho-Corasick pass per field yields ``(start, end, pattern)`` tuples; all
lookups (emitted ids, precedence, casualty rules) are precomputed; sentences are only
split for fields that have both a community and an incident word; the casualty regex
runs only around harm words; the fields' offset maps and layouts (``fold_layout``) are made
only when evidence, sentences, places or figures are read; Evidence models are built on
first access to ``Classification.evidence`` from plain tuples.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prevent.classification.casualties import casualty_totals, find_casualties, find_counts
from prevent.classification.diaspora import DiasporaMap, load_diaspora
from prevent.classification.language import MAX_CHARS, detect_language
from prevent.classification.lexicon import Lexicon, load_lexicon
from prevent.classification.matcher import Kind, Matcher, Pattern, fold, fold_layout, fold_term
from prevent.classification.places import felt_at, gazetteer
from prevent.classification.sources import Assessment
from prevent.contracts import Evidence

FieldName = Literal["title", "summary"]
FIELDS: tuple[FieldName, FieldName] = ("title", "summary")
TITLE_WEIGHT = 1.5
LINK_WEIGHT = 1.5  # type words next to a targeted community say most about what happened
NATURAL_DISASTER = "natural_disaster"

# Full stops of every served script too: the danda (।, ॥), Arabic and Urdu (؟ ۔ ؛).
_SENTENCE_END = re.compile(r"[.!?;।॥؟۔؛]+(?=\s|$)")
# A full stop after these is an abbreviation ("St. Mary's", "Rev. King"), not a sentence end.
_ABBREVIATIONS = frozenset({"st", "dr", "mr", "ms", "mrs", "rev", "no", "gen", "lt", "col", "sgt",
                            "jr", "sr", "mt", "ft", "vs"})
# "in 1992", "1990 में", "במצעד של 2015", "۱۹۹۰": a sentence dated with a year tells
# background, not today's news.
_FOUR_DIGITS = re.compile(r"(?<!\d)\d{4}(?!\d)")  # any script's digits


def _has_year(text: str, lo: int, hi: int) -> bool:
    return any(1900 <= int("".join(str(unicodedata.decimal(c)) for c in m.group())) <= 2099
               for m in _FOUR_DIGITS.finditer(text, lo, hi))


def _sentence_ends(text: str, pos: int = 0) -> list[int]:
    ends = []
    for m in _SENTENCE_END.finditer(text, pos):
        i = m.start()
        j = i
        while j > 0 and text[j - 1].isalpha():
            j -= 1
        word = text[j:i]
        # "U.S." and initials: a single capital letter before the stop.
        if text[i] == "." and (word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())):
            continue
        ends.append(m.end())
    return ends


# Case endings glued to place names, by language: each match is blanked to spaces (a Tamil
# ending that replaced a name's final virama leaves the virama), so the bare name is found
# at the same offsets. Longest endings first.
# Several readings are tried in turn: "ভারতে" is ভারত + -ে, "দিল্লিতে" দিল্লি + -তে.
_CASE_ENDINGS = {
    # Bengali (folded: the nukta of য় is gone): -ের/-এর/-র genitive, -ে/-তে/-য় locative, -কে.
    "bn": (re.compile(r"(?<=[\u0980-\u09FF])(েরও|েরই|ের|এর|য়|য|কে|র|ে)(?=\s|$)"),
           re.compile(r"(?<=[\u0980-\u09FF])(তেও|তে)(?=\s|$)")),
    # Tamil: -இல்/-யில்/-வில் locative, -இன்/-யின்/-வின் genitive, -க்கு/-உக்கு dative, -த்தில்
    # (of -ம் names); an ending that began with a vowel sign replaced the name's virama.
    "ta": (re.compile(r"(?<=[\u0B80-\u0BFF])(த்தில்|த்தின்|யிலும்|விலும்|யில்|வில்|யின்|வின்|"
                      r"வுக்கு|க்கு|ிலும்|ில்|ின்|ுக்கு)(?=\s|$)"),),
}


def _blanked(folded: tuple[str, str], hits: Iterable[_H]) -> tuple[str, str]:
    """The folded texts with the spans of ``hits`` replaced by spaces (offsets unchanged)."""
    spans: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
    for f, s, e, _, _ in hits:
        spans[f].append((s, e))
    out = []
    for f in (0, 1):
        text = folded[f]
        if spans[f]:
            # Slices between the (few) spans, not a list of every character: spans may
            # overlap or nest (a community word inside a type phrase).
            parts: list[str] = []
            pos = 0
            for s, e in sorted(spans[f]):
                if e > pos:
                    s = max(s, pos)
                    parts += (text[pos:s], " " * (e - s))
                    pos = e
            parts.append(text[pos:])
            text = "".join(parts)
        out.append(text)
    return out[0], out[1]


def _blank_ending(m: re.Match[str]) -> str:
    ending = m.group(1)
    if ending.startswith("த்தி"):  # கேரளத்தில் -> கேரளம்
        return "ம்" + " " * (len(ending) - 2)
    if ending[0] in "ிு":  # பாகிஸ்தானில் -> பாகிஸ்தான்
        return "்" + " " * (len(ending) - 1)
    return " " * len(ending)


# Killed in one attack that names no community before its country's diaspora here is
# taken to be affected (a national-scale attack, not a market bombing of twenty).
HOMELAND_KILLED = 30
# Languages in Arabic script that write "in" apart: no clitic prefix is read off a place name.
_APART = frozenset({"fa", "ur"})
# Types of violence that can put a community at risk of backlash or reach a homeland.
_WAR_TYPES = frozenset({"armed_attack", "bombing", "arson", "riot", "hate_crime"})
# Types of communal violence: a riot or arson in a flashpoint region (riot_faiths), or
# a protest there in which people were killed.
_RIOT_TYPES = frozenset({"riot", "arson"})
_WORSHIP_GROUPS = frozenset({"places", "clergy", "observances"})
# Types of an attack on people, where naming the people attacked means someone was hurt.
_ASSAULT_TYPES = frozenset({"armed_attack", "hate_crime", "riot"})
# Community words whose attack means people were hurt or meant to be (severity 2 at least).
_HIT_GROUPS = frozenset({"people", "places", "clergy"})
# Community words that can name who acted ("Hindu mob", "Israeli forces"): people only.
_ACTOR_GROUPS = frozenset({"people", ""})

_PLACE_PREPOSITIONS = (" in ", " near ", " at ", " en ", " au ", " a ", " dans ")

# Evidence rows: (rule, term, field, start, end), turned into Evidence models on demand.
EvidenceRow = tuple[str, str, str, int, int]
# communities, incident type, severity, casualties, country, evidence rows, language,
# communities at risk of backlash, place of worship hit
ClassificationTuple = tuple[tuple[str, ...], str, int, dict[str, "int | None"], "str | None",
                            tuple[EvidenceRow, ...], "str | None", tuple[str, ...], bool]


class Classification(BaseModel):
    """The result of :meth:`Classifier.classify`. ``evidence`` is built on first access."""

    model_config = ConfigDict(frozen=True)

    communities: tuple[str, ...]
    incident_type: str
    severity: int
    casualties: dict[str, int | None]
    country: str | None
    evidence_rows: tuple[EvidenceRow, ...] = Field(default=(), repr=False)
    lang: str | None = None  # the item's language, as detected (ISO 639-1)
    # Communities at risk of backlash, not targeted: the community a perpetrator claimed to
    # act for, or the side of a conflict blamed for it (evidence rules "backlash:<id>").
    backlash: tuple[str, ...] = ()
    # A place of worship, its clergy, an observance or a religious gathering was hit.
    worship: bool = False

    @model_validator(mode="before")
    @classmethod
    def _accept_evidence(cls, data: Any) -> Any:
        """``Classification(evidence=[Evidence(...), ...])`` still works."""
        if isinstance(data, dict) and "evidence" in data:
            data = dict(data)
            rows = []
            for e in data.pop("evidence") or ():
                e = e if isinstance(e, Evidence) else Evidence.model_validate(e)
                rows.append((e.rule, e.term, e.field, e.start, e.end))
            data["evidence_rows"] = tuple(rows)
        return data

    @cached_property
    def evidence(self) -> tuple[Evidence, ...]:
        # Rows are validated already (by this model, or made by the classifier).
        return tuple(_evidence(*row) for row in self.evidence_rows)

    def as_tuple(self) -> ClassificationTuple:
        """The values, in ``from_tuple``'s order: cheap to send to another process (a
        pickled model costs several times more to load)."""
        return (self.communities, self.incident_type, self.severity, self.casualties, self.country,
                self.evidence_rows, self.lang, self.backlash, self.worship)

    def to_json(self) -> dict[str, Any]:
        return {
            "communities": list(self.communities),
            "incident_type": self.incident_type,
            "severity": self.severity,
            "evidence": [{"rule": r, "term": t, "field": f, "start": s, "end": e}
                         for r, t, f, s, e in self.evidence_rows],
            "casualties": dict(self.casualties),
            "country": self.country,
            "lang": self.lang,
            "backlash": list(self.backlash),
            "worship": self.worship,
        }


def _result(communities: tuple[str, ...], incident_type: str, severity: int,
            casualties: dict[str, int | None], country: str | None,
            rows: tuple[EvidenceRow, ...], lang: str | None = None, backlash: tuple[str, ...] = (),
            worship: bool = False) -> Classification:
    """A Classification from values the classifier built itself."""
    return Classification.model_construct(
        communities=communities, incident_type=incident_type, severity=severity,
        casualties=casualties, country=country, evidence_rows=rows, lang=lang,
        backlash=backlash, worship=worship)


def _evidence(rule: str, term: str, field: str, start: int, end: int) -> Evidence:
    return Evidence.model_construct(rule=rule, term=term, field=field, start=start, end=end)


def with_assessment(c: Classification, assessed: Assessment) -> Classification:
    """``c`` with the severity the source itself assessed (PAGER, GDACS, CAP): for a natural
    disaster it replaces what the words said, with its reason as evidence."""
    rows = (*c.evidence_rows, (assessed.source, assessed.reason, "title", 0, 0))
    return _result(c.communities, c.incident_type, assessed.severity, c.casualties, c.country, rows, c.lang,
                   c.backlash, c.worship)


def from_tuple(values: ClassificationTuple) -> Classification:
    """A Classification back from ``as_tuple()`` (values a classifier made: not re-validated)."""
    return _result(*values)


# A hit during classification: (field index 0 title / 1 summary, start, end, pattern, sentence)
_H = tuple[int, int, int, Pattern, int]  # + sentence number, -1 until needed


@dataclass(slots=True)
class _Item:
    """One item being classified: its two fields as given, folded (``fold``), and its
    language. Where each folded offset is in the original (``maps``: None, the same) and the
    fields laid out as folded (``aligned``: sentences and capitals are read at folded
    offsets) are worked out on first use (``fold_layout``): an item without an incident
    word (most news) needs neither, unless it names a country."""

    texts: tuple[str, str]
    folded: tuple[str, str]
    lang: str
    _maps: tuple[list[int] | None, list[int] | None] | None = None
    _aligned: tuple[str, str] | None = None

    @classmethod
    def of(cls, title: str, summary: str, lang: str) -> _Item:
        return cls((title, summary), (fold(title), fold(summary)), lang)

    @property
    def maps(self) -> tuple[list[int] | None, list[int] | None]:
        return self._maps if self._maps is not None else self._lay_out()[0]

    @property
    def aligned(self) -> tuple[str, str]:
        return self._aligned if self._aligned is not None else self._lay_out()[1]

    def _lay_out(self) -> tuple[tuple[list[int] | None, list[int] | None], tuple[str, str]]:
        (m0, a0), (m1, a1) = fold_layout(self.texts[0]), fold_layout(self.texts[1])
        self._maps, self._aligned = (m0, m1), (a0, a1)
        return self._maps, self._aligned

    def row(self, rule: str, f: int, s: int, e: int) -> EvidenceRow:
        """Evidence for folded offsets ``s``-``e`` of field ``f``, in the original's offsets."""
        m = self.maps[f]
        if m is not None:
            s, e = m[s] if s < len(m) else len(self.texts[f]), (m[e - 1] + 1) if 0 < e <= len(m) else e
        return (rule, self.texts[f][s:e], FIELDS[f], s, e)


@dataclass(slots=True)
class _Hits:
    """The lexicon's hits in an item, by kind (``other``: escalation, aftermath, cause,
    country, context and the rest: rare, few)."""

    com: list[_H] = field(default_factory=list)
    typ: list[_H] = field(default_factory=list)
    harm: list[_H] = field(default_factory=list)
    other: list[_H] = field(default_factory=list)
    perpetrators: list[_H] = field(default_factory=list)


@dataclass(slots=True)
class _Found:
    """Communities affected, with the evidence that is not a community word."""

    ids: set[str] = field(default_factory=set)
    majority_row: EvidenceRow | None = None
    region_rows: list[EvidenceRow] = field(default_factory=list)
    worship: bool = False  # the majority faith was reached through an attacked gathering


class Classifier:
    """A compiled lexicon. Build once (``from_dir``), then ``classify`` many items."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self._matcher = Matcher(lexicon)
        # One automaton per language: an item is read with its own language's words only
        # (German "Messe" is a trade fair, Italian "tue" is "yours").
        # Compiled on first use: a process that never meets a language never pays for it
        # (an automaton with a language's stems and clitic prefixes takes 0.1-1 s to build).
        self._matchers: dict[str, Matcher] = {"en": self._matcher}
        self._numbers: dict[str, dict[str, int]] = {}
        tf = lexicon.incident_types
        cf = lexicon.communities
        last = len(tf.precedence)
        self._rank = {t: last - i for i, t in enumerate(tf.precedence)}  # higher wins ties
        self._cap = {k.lower(): v for k, v in tf.cap_severity.items()}
        self._casualty_rules = tuple((r.killed, r.injured, r.severity) for r in tf.casualty_severity)
        self._aftermath_cap = tf.aftermath_max_severity
        self._cause_weight = tf.cause_weight
        self._link_window = tf.link_window
        communities = {c.id: c for c in cf.communities}
        ancestors = {cid: _ancestors(cid, communities) for cid in communities}
        self._ancestors = ancestors
        # Ids emitted for a matched community abroad, and at home (no ancestors there:
        # "Chinese" in China is not "asian"); a faith a community implies comes with its
        # ancestors, unless the text names a faith ("Pakistani Christians" are not Muslims).
        self._out_abroad: dict[str, frozenset[str]] = {}
        self._out_home: dict[str, frozenset[str]] = {}
        self._implied: dict[str, frozenset[str]] = {}
        for cid, c in communities.items():
            self._out_home[cid] = frozenset({cid})
            self._out_abroad[cid] = frozenset({cid, *ancestors[cid]})
            self._implied[cid] = frozenset(x for imp in c.implies for x in (imp, *ancestors[imp]))
        self._faiths = frozenset(cid for cid, c in communities.items()
                                 if c.kind in ("faith", "denomination"))
        self._home = {cid: frozenset(c.home_countries) for cid, c in communities.items()}
        diaspora: dict[str, list[str]] = {}
        for c in communities.values():
            for code in c.home_countries:
                diaspora.setdefault(code, []).append(c.id)
        self._map = lexicon.diaspora or DiasporaMap.empty()
        for code, ids in self._map.by_country.items():  # the officers' map adds its links
            diaspora.setdefault(code, []).extend(i for i in ids if i in communities)
        self._diaspora = {code: tuple(sorted(set(ids))) for code, ids in diaspora.items()}
        # The diaspora communities (not faiths at large) of each country: the people of a
        # homeland struck by a mass-casualty attack that names nobody.
        self._homeland = {code: tuple(i for i in ids if communities[i].kind == "diaspora")
                          for code, ids in self._diaspora.items()}
        self._homeland = {code: ids for code, ids in self._homeland.items() if ids}
        self._majority = {code: faith for faith, codes in cf.majority_faith.items() for code in codes}
        self._emit_cache: dict[tuple[frozenset[str], str | None], tuple[str, ...]] = {}

    @classmethod
    def from_dir(cls, directory: Path) -> Classifier:
        """Load the base files, the language lexicons and the diaspora map; raises
        LexiconError for the base files (a bad language file or diaspora map is left out,
        with its ``file:line`` errors logged)."""
        lexicon = load_lexicon(Path(directory))
        return cls(replace(lexicon, diaspora=load_diaspora(Path(directory), lexicon)))

    # ------------------------------------------------------------------ public

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages with a lexicon (English is the base files)."""
        return tuple(sorted({"en", *self.lexicon.languages}))

    def _matcher_for(self, lang: str) -> Matcher:
        matcher = self._matchers.get(lang)
        if matcher is None:
            lf = self.lexicon.languages.get(lang)
            if lf is None:
                return self._matcher
            # Two threads may both build it the first time; either result is the same.
            self._numbers[lang] = {fold_term(w): n for w, n in lf.numbers.items() if fold_term(w)}
            matcher = self._matchers[lang] = Matcher(self.lexicon, lf)
        return matcher

    def diaspora_links(self) -> dict[str, tuple[str, ...]]:
        """Country -> the communities here a disaster there concerns (communities.yaml's
        home countries and the officers' diaspora map)."""
        return dict(self._diaspora)

    def diaspora_regions(self) -> list[tuple[Any, tuple[str, ...]]]:
        """The diaspora map's regions, each with its names as written."""
        return [(region, region.names) for region, _ in self._map.regions]

    def warm(self) -> None:
        """Compile every language's automaton and the gazetteer now (services do this at
        start, not on an item)."""
        for lang in self.lexicon.languages:
            self._matcher_for(lang)
        gazetteer()

    def classify(self, title: str, summary: str = "", *, cap_severity: str | None = None,
                 country: str | None = None, lang: str | None = None) -> Classification:
        """Classify one item. ``country`` is the feed's own country (GeoRSS, GeoJSON, CAP
        area): it wins over places named in the text. ``lang`` is the feed's declared
        language: a prior for the language identifier, which decides per item.

        The steps, each a method below: the item's language and folded text (``_Item``); the
        lexicon's hits (``_scan``), community words split into victims and those who acted
        (``_actors``); where it happened (``_place``); the incident's type from the hits
        near its communities (``_targets``, ``_choose_type``); casualty figures and severity;
        the communities affected (named, or through the diaspora map: ``_communities_of``,
        ``_homeland_of``) and those at risk of backlash; the evidence rows."""
        item = _Item.of(title, summary, detect_language(title, summary[:MAX_CHARS], lang) or "en")
        matcher = self._matcher_for(item.lang)
        hits = self._scan(item, matcher)
        cap = self._cap.get(cap_severity.strip().lower()) if cap_severity else None
        country, country_row = self._place(item, hits, country.upper() if country else None, cap)
        com, typ, harm, other = hits.com, hits.typ, hits.harm, hits.other
        if not typ and cap is None:
            # Harm words alone ("Pope dies at 88") are not an incident.
            return _result((), "none", 0, {"killed": None, "injured": None}, country,
                           (country_row,) if country_row else (), item.lang)

        sentences = _Sentences(item.aligned)
        sentence = sentences.index
        causes = self._cause_spans(item.aligned, other, typ, sentence) if other else ()
        if com and typ:
            # Sentence numbers, once per hit, only when a community could be linked.
            typ = [(f, s, e, p, sentence(f, s)) for f, s, e, p, _ in typ]
            harm = [(f, s, e, p, sentence(f, s)) for f, s, e, p, _ in harm]
            targets = self._targets(com, typ, harm, causes, sentence)
        else:
            targets = []
        if typ:
            itype, type_hits = self._choose_type(typ, {(h[0], h[4]) for h in targets}, causes)
        else:
            itype, type_hits = NATURAL_DISASTER, []  # CAP feeds carry hazard alerts
        if itype == "none" and cap is None:
            # Words that say nobody was attacked ("killed in a road accident", "drowned")
            # outvote the weak ones that alone would make an incident: none, with them as evidence.
            rows0 = tuple(item.row("type:none", h[0], h[1], h[2]) for h in type_hits)
            return _result((), "none", 0, {"killed": None, "injured": None}, country,
                           rows0 + ((country_row,) if country_row else ()), item.lang)

        casualty_matches = self._casualty_matches(item, harm, matcher)
        casualties = casualty_totals([m for _, m in casualty_matches])
        # People attacked for who they are ("Juden angegriffen", "ਦੋ ਸਿੱਖਾਂ 'ਤੇ ਹਮਲਾ"), their clergy
        # or their place of worship ("পূজামণ্ডপে হামলা", "attack on a mosque") were hurt or meant
        # to be: at least severity 2, where the attack word alone says 1.
        people_hit = itype in _ASSAULT_TYPES and bool(targets) and any(
            h[3].group in _HIT_GROUPS and (h[0], h[4]) in {(t[0], t[4]) for t in type_hits} for h in targets)
        severity, capped_by = self._severity(itype, type_hits, harm, other, casualties, cap, sentences,
                                             causes, floor=2 if people_hit else 1)

        if itype == NATURAL_DISASTER:
            targets = []
        found = self._communities_of(item, itype, severity, targets, typ, harm, other, country, sentence)
        homeland_row: EvidenceRow | None = None
        homeland = False
        if (not found.ids and itype in _WAR_TYPES and (casualties["killed"] or 0) >= HOMELAND_KILLED
                and country in self._homeland and not self._aftermath(other) and severity >= 2):
            # An attack of national scale that names no community: the people of the country
            # are its victims, and that country's diaspora here is affected ("Hamas militants
            # storm southern Israel, killing hundreds").
            found.ids = set(self._homeland[country])
            homeland = True
            if country in self._majority:  # and the country's majority faith (Iran: Muslims)
                found.ids.add(self._majority[country])
            if country_row:
                homeland_row = (f"homeland:{country}", *country_row[1:])
        ids = found.ids
        # The diaspora of a homeland struck is a community here: named as it is abroad, with its
        # broader communities (the Haitian diaspora is part of the Black community here).
        emitted = self._emit(ids, None if homeland else country) if ids else ()
        backlash: tuple[str, ...] = ()
        backlash_rows: list[EvidenceRow] = []
        perpetrators = hits.perpetrators
        if perpetrators and itype in _WAR_TYPES and severity >= 2:
            blamed = {h[3].key for h in perpetrators}
            backlash = tuple(x for x in self._emit(blamed, None) if x not in emitted
                             and x not in self._parents_only(emitted))
            backlash_rows = [item.row(f"backlash:{h[3].key}", h[0], h[1], h[2]) for h in perpetrators]
        worship = found.worship or any(h[3].group in _WORSHIP_GROUPS for h in targets) or (
            itype != NATURAL_DISASTER and bool(ids)
            and self._gathering_attacked(other, typ, harm, sentence) is not None)

        rows: list[EvidenceRow] = [item.row(h[3].rule, h[0], h[1], h[2]) for h in targets]
        if found.majority_row:
            rows.append(found.majority_row)
        if homeland_row:
            rows.append(homeland_row)
        rows += found.region_rows
        rows += backlash_rows
        rows += [item.row(h[3].rule, h[0], h[1], h[2]) for h in type_hits]
        rows += [item.row("casualties", f, m.start, m.end) for f, m in casualty_matches]
        rows += self._severity_rows(item, severity, type_hits, harm, other, casualty_matches)
        if capped_by is not None:  # "sentenced", "documentary": a look-back, capped
            rows.append(item.row(f"aftermath:{severity}", capped_by[0], capped_by[1], capped_by[2]))
        if country_row:
            rows.append(country_row)
        return _result(emitted, itype, severity, casualties, country, tuple(rows), item.lang,
                       backlash if severity >= 2 else (), worship)

    def _scan(self, item: _Item, matcher: Matcher) -> _Hits:
        """The lexicon's hits in both fields, by kind; community words that name who acted
        ("Hindu mob", "Israeli forces") moved to ``perpetrators``; attack words that need
        context dropped when the item has none."""
        hits = _Hits()
        com, typ, harm, other = hits.com, hits.typ, hits.harm, hits.other
        heads: dict[tuple[int, int], tuple[int, int]] = {}  # head position -> (its start, its end)
        blame: set[tuple[int, int]] = set()  # head positions that name perpetrators
        acts: set[tuple[int, int]] = set()  # where a verb saying its subject acted starts
        folded = item.folded
        scan = matcher.scan_spans
        for f in (0, 1):
            if not folded[f]:
                continue
            for s, e, p in scan(folded[f]):
                kind = p.kind
                if kind is Kind.COMMUNITY:
                    com.append((f, s, e, p, -1))
                elif kind is Kind.TYPE:
                    typ.append((f, s, e, p, -1))
                elif kind is Kind.HARM:
                    harm.append((f, s, e, p, -1))
                elif kind is Kind.NON_TARGET:
                    heads[(f, s)] = (s, e)
                elif kind is Kind.NON_TARGET_BEFORE:
                    heads[(f, -1 - _next_word(folded[f], e))] = (s, e)
                elif kind is Kind.BLAME_HEAD:
                    blame.add((f, s))
                elif kind is Kind.BLAME_BEFORE:
                    blame.add((f, -1 - _next_word(folded[f], e)))
                elif kind is Kind.ACTS:
                    acts.add((f, s))
                else:
                    other.append((f, s, e, p, -1))
        hits.perpetrators = [h for h in other if h[3].kind is Kind.BLAMED]
        if (heads or blame or acts) and com:
            hits.com = self._actors(item, hits, heads, blame, acts)
        if typ and any(h[3].needs_context for h in typ) and not any(
                h[3].kind is Kind.CONTEXT for h in other):
            hits.typ = [h for h in typ if not h[3].needs_context]
        return hits

    @staticmethod
    def _actors(item: _Item, hits: _Hits, heads: dict[tuple[int, int], tuple[int, int]],
                blame: set[tuple[int, int]], acts: set[tuple[int, int]]) -> list[_H]:
        """The community words that name victims or bystanders (kept); those a blame head
        makes perpetrators are added to ``hits.perpetrators``; those followed by a verb that
        says they acted ("Rabbi attacks critics", "Jewish MP attacks Labour") are dropped."""
        folded = item.folded
        # Where a word of harm (severity 2 or more) starts: a speaker it directly follows
        # is its victim.
        hurt = {(f, s) for f, s, _, p, _ in (*hits.typ, *hits.harm) if p.severity >= 2}
        # Heads that are themselves attack words ("atacantes palestinos abrieron fuego")
        # name who acted, whatever follows.
        attacks = {(f, s) for f, s, _, _, _ in hits.typ}
        kept = []
        for h in hits.com:
            if acts and _acted(h, folded[h[0]], acts):
                continue
            if h[3].group not in _ACTOR_GROUPS:  # "synagogue shooter": a place never acts
                kept.append(h)
                continue
            after, before = (h[0], _next_word(folded[h[0]], h[2])), (h[0], -1 - h[1])
            if after in blame or before in blame:
                hits.perpetrators.append(h)  # "Hindu mob", "Israeli forces": who acted
            elif after not in heads and before not in heads:
                kept.append(h)
            elif _hurt_speaker(h, heads.get(after) or heads[before], folded[h[0]], hurt, attacks):
                kept.append(h)  # "Hindu leader shot dead", "dirigeant musulman poignardé": the victim
        return kept

    def _place(self, item: _Item, hits: _Hits, hint: str | None,
               cap: int | None) -> tuple[str | None, EvidenceRow | None]:
        """Where it happened, and the evidence: the feed's own country (``hint``) wins; then a
        country word of the lexicon; then, for an incident only, the gazetteer's places."""
        folded = item.folded
        found, country_hit = self._country(folded, hits.com, hits.other)
        country_row = item.row(country_hit[3].rule, *country_hit[:3]) if country_hit else None
        if found is None and hint is None and (hits.typ or cap is not None):
            # No curated place name: the gazetteer's names in every script, title first (only
            # for an incident: where nothing happened, where it did not happen is moot).
            # The lexicon's own words are blanked first (same length, same offsets): a city
            # whose name is also a word ("هزة", a tremor, is a city in China) is not a place
            # inside "هزة أرضية".
            places_text = _blanked(folded, (*hits.com, *hits.typ, *hits.harm))
            aligned = item.aligned
            for f in (0, 1):
                place = (gazetteer().country_of(places_text[f], aligned[f], clitics=item.lang not in _APART)
                         if folded[f] else None)
                if place is None and item.lang in _CASE_ENDINGS and folded[f]:
                    # Bengali and Tamil glue case endings to names ("বাংলাদেশের", "ঢাকায়",
                    # "இலங்கையில்"): try the text with them blanked (same length, same offsets).
                    for endings in _CASE_ENDINGS[item.lang]:
                        bare = endings.sub(_blank_ending, places_text[f])
                        if bare != folded[f]:
                            place = gazetteer().country_of(bare, aligned[f], clitics=False)
                            if place is not None:
                                break
                if place is not None:
                    found = place[0]
                    country_row = item.row(f"country:{found}", f, place[1].start, place[1].end)
                    break
        country = hint or found
        return country, (country_row if found == country else None)

    def _casualty_matches(self, item: _Item, harm: list[_H], matcher: Matcher) -> list[tuple[int, Any]]:
        """(field, match) of every casualty figure next to a word of harm (severity 2 or more)."""
        folded = item.folded
        casualty_matches: list[tuple[int, Any]] = []
        numbers = self._numbers.get(item.lang) if matcher is not self._matcher else None
        for f in (0, 1):
            anchors = [(s, e) for hf, s, e, p, _ in harm if hf == f and p.severity >= 2]
            if not anchors:
                continue
            if numbers is None:
                casualty_matches += [(f, m) for m in find_casualties(folded[f], anchors)]
            else:
                kinds = [p.severity >= 3 for hf, s, e, p, _ in harm if hf == f and p.severity >= 2]
                order = self.lexicon.languages[item.lang].figures
                casualty_matches += [(f, m) for m in find_counts(folded[f], anchors, kinds, numbers,
                                                                 item.aligned[f], order)]
        return casualty_matches

    def _communities_of(self, item: _Item, itype: str, severity: int, targets: list[_H],
                        typ: list[_H], harm: list[_H], other: list[_H], country: str | None,
                        sentence: Any) -> _Found:
        """The communities affected, before the homeland rule: a disaster's through its
        country and the diaspora map's regions; an attack's by the words that name them, else
        through the map's regions (an attacked gathering, a region's majority, outsiders,
        riot towns) or the country's majority faith when a gathering was attacked."""
        found = _Found()
        row = item.row
        if itype == NATURAL_DISASTER:
            found.ids = set(self._diaspora.get(country or "", ()))
            # Regions the officers' diaspora map links communities to (Kerala, Punjab).
            for region, f, rs, re_ in self._map.regions_in(item.folded, country) if self._map.regions else ():
                if region.communities:
                    found.ids |= set(region.communities)
                    found.region_rows.append(row(f"region:{region.id}", f, rs, re_))
            return found
        found.ids = {h[3].key for h in targets}
        if not found.ids and self._map.regions and severity >= 2:
            gathering = self._gathering_attacked(other, typ, harm, sentence)
            for region, f, rs, re_ in self._map.regions_in(item.folded, country):
                faith = (region.gathering_faith or region.majority_faith) if gathering else None
                if faith is None and region.attacks_target_majority and severity >= 3 and (
                        not region.attack_types or itype in region.attack_types):
                    faith = region.majority_faith
                outsiders = (self._gathering_attacked(other, typ, harm, sentence, Kind.OUTSIDER)
                             if faith is None and region.outsider_faith and severity >= 3 else None)
                # ``outsiders`` is None without an outsider faith: the second test only narrows it
                if outsiders and region.outsider_faith:  # tourists shot in Pahalgam: not a place of worship
                    found.ids = {region.outsider_faith}
                    found.majority_row = row(f"outsider_faith:{region.outsider_faith}", *outsiders)
                    found.region_rows.append(row(f"region:{region.id}", f, rs, re_))
                    break
                if faith is None and region.riot_faiths and (
                        itype in _RIOT_TYPES or (itype == "protest" and severity >= 3)):
                    found.ids = set(region.riot_faiths)
                    found.region_rows.append(row(f"region:{region.id}", f, rs, re_))
                    break
                if faith:
                    found.ids = {faith}
                    found.majority_row = row(f"majority_faith:{faith}", *(gathering or (f, rs, re_)))
                    found.worship = gathering is not None
                    found.region_rows.append(row(f"region:{region.id}", f, rs, re_))
                    break
        if not found.ids and country in self._majority:
            gathering = self._gathering_attacked(other, typ, harm, sentence)
            if gathering:
                faith = self._majority[country]
                found.ids = {faith}
                found.majority_row = row(f"majority_faith:{faith}", *gathering)
                found.worship = True
        return found

    @staticmethod
    def _aftermath(other: list[_H]) -> bool:
        return any(p.kind is Kind.AFTERMATH and f == 0 for f, _, _, p, _ in other)

    def _parents_only(self, emitted: tuple[str, ...]) -> frozenset[str]:
        """Ancestors of the targeted communities: a backlash community is never only a
        broader name for the victims ("asian" when Chinese were attacked)."""
        return frozenset(a for cid in emitted for a in self._ancestors.get(cid, ()))

    # ------------------------------------------------------------------ steps

    def _targets(self, com: list[_H], typ: list[_H], harm: list[_H], causes: Any,
                 sentence: Any) -> list[_H]:
        """Community words with a type or harm word close by in the same sentence,
        outside any cause clause that reports an earlier incident."""
        incident: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for f, s, e, _, n in typ:
            incident.setdefault((f, n), []).append((s, e))
        for f, s, e, _, n in harm:
            incident.setdefault((f, n), []).append((s, e))
        window = self._link_window
        out = []
        for f, s, e, p, _ in com:
            n = sentence(f, s)
            near = incident.get((f, n))
            if not near:
                continue
            for hs, he in near:
                if (hs - e if hs > s else s - he) <= window:
                    break
            else:
                continue
            # "... weeks after the Easter bombings": the target of an earlier incident.
            if causes and any(_inside(span, f, s) and any(_inside(span, h[0], h[1]) for h in typ)
                              for span in causes):
                continue
            out.append((f, s, e, p, n))
        return out

    def _choose_type(self, typ: list[_H], linked: set[tuple[int, int]],
                     causes: Any) -> tuple[str, list[_H]]:
        scores: dict[str, float] = {}
        cause_weight = self._cause_weight
        for f, s, _, p, n in typ:
            weight = p.weight
            if f == 0:
                weight *= TITLE_WEIGHT
            if linked and (f, n) in linked:
                weight *= LINK_WEIGHT
            if causes and any(_inside(span, f, s) for span in causes):
                weight *= cause_weight
            scores[p.key] = scores.get(p.key, 0.0) + weight
        if len(scores) == 1:
            return p.key, typ
        rank = self._rank
        best = max(scores, key=lambda t: (scores[t], rank.get(t, 0)))
        return best, [h for h in typ if h[3].key == best]

    @staticmethod
    def _cause_spans(texts: tuple[str, str], other: list[_H], typ: list[_H],
                     sentence: Any) -> list[tuple[int, int, int]]:
        """Spans from a cause marker to the next comma (the Arabic-script "،" too) or sentence
        end ("Following X, mobs attacked"), kept only where the sentence reports something outside them too:
        in "Curfew imposed after clashes" the clashes are the incident."""
        spans = []
        for f, s, e, p, _ in other:
            if p.kind is not Kind.CAUSE:
                continue
            text = texts[f]
            stops = [i for i in (text.find(",", e), text.find("،", e), *_sentence_end(text, e)) if i >= 0]
            end = min(stops, default=len(text))
            sent = sentence(f, s)
            if any(hf == f and not s < hs < end and sentence(hf, hs) == sent for hf, hs, _, _, _ in typ):
                spans.append((f, s, end))
        return spans

    def _severity(self, itype: str, type_hits: list[_H], harm: list[_H], other: list[_H],
                  casualties: dict[str, int | None], cap: int | None, sentences: _Sentences,
                  causes: Any = (), floor: int = 1) -> tuple[int, _H | None]:
        """The severity, and the title's look-back word that capped it (None when none did).
        A look-back word inside a cause clause names what set off the reported event, not a
        retelling of it ("violence erupts after vigil"): it caps nothing."""
        if itype == "none":
            return 0, None
        severity = max(floor, cap or 0, *(h[3].severity for h in type_hits), *(h[3].severity for h in harm))
        aftermath: _H | None = None
        for h in other:
            p = h[3]
            if p.kind is Kind.ESCALATION:
                severity = max(severity, p.severity)
            elif p.kind is Kind.AFTERMATH and h[0] == 0 and aftermath is None and not any(
                    _inside(span, 0, h[1]) for span in causes):
                aftermath = h
        killed, injured = casualties["killed"] or 0, casualties["injured"] or 0
        for k, i, level in self._casualty_rules:
            if level > severity and ((k and killed >= k) or (i and injured >= i)):
                severity = level
        if aftermath or (cap is None and type_hits and _background_only(type_hits, sentences)):
            capped = min(severity, self._aftermath_cap)
            return capped, (aftermath if capped < severity else None)
        return severity, None

    @staticmethod
    def _severity_rows(item: _Item, severity: int, type_hits: list[_H], harm: list[_H], other: list[_H],
                       casualty_matches: list[tuple[int, Any]]) -> list[EvidenceRow]:
        """The words of harm or escalation that set ``severity`` above what the type's own
        words say ("un giovane morto": 3; "devastating": 4), as evidence a duty inspector can
        read (``harm:3``, ``escalation:4``); none when a casualty figure already shows it."""
        if severity < 2 or any(h[3].severity >= severity for h in type_hits):
            return []
        figures = [(f, m.start, m.end) for f, m in casualty_matches]
        out: list[EvidenceRow] = []
        for f, s, e, p, _ in (*harm, *(h for h in other if h[3].kind is Kind.ESCALATION)):
            if p.severity != severity or any(ff == f and fs <= s and e <= fe for ff, fs, fe in figures):
                continue
            out.append(item.row(f"{'harm' if p.kind is Kind.HARM else 'escalation'}:{severity}", f, s, e))
        return out[:3]

    @staticmethod
    def _gathering_attacked(other: list[_H], typ: list[_H], harm: list[_H],
                            sentence: Any, kind: str = Kind.GATHERING) -> tuple[int, int, int] | None:
        """A religious-gathering word (worshippers, pilgrims, shrine; or, with ``kind``
        OUTSIDER, tourists) shares a sentence with a violent type or harm word: an attack
        on a faith the text does not name."""
        gatherings = [(f, s, e) for f, s, e, p, _ in other if p.kind is kind]
        if not gatherings:
            return None
        violent = {(f, sentence(f, s)) for f, s, _, p, _ in (*typ, *harm) if p.severity >= 2}
        for f, s, e in gatherings:
            if (f, sentence(f, s)) in violent:
                return f, s, e
        return None

    @staticmethod
    def _country(folded: tuple[str, str], com: list[_H], other: list[_H]) -> tuple[str | None, _H | None]:
        best: tuple[bool, bool, bool, int] | None = None
        best_hit: _H | None = None
        for h in other:
            f, s, e, p, _ = h
            if p.kind is not Kind.COUNTRY:
                continue
            # "Congregation Beth Israel" names a synagogue, not a country.
            if any(cf == f and cs <= s and e <= ce and ce - cs > e - s for cf, cs, ce, _, _ in com):
                continue
            before = folded[f][max(0, s - 5):s]
            # The title beats the summary; a place where a quake was only felt comes last; then
            # "attacked in Amsterdam" beats "fans from Israel".
            rank = (f != 0, felt_at(folded[f], s, e), not before.endswith(_PLACE_PREPOSITIONS), s)
            if best is None or rank < best:
                best, best_hit = rank, h
        if best_hit is None:
            return None, None
        return best_hit[3].key, best_hit

    def _emit(self, communities: Any, country: str | None) -> tuple[str, ...]:
        key = (frozenset(communities), country)
        out = self._emit_cache.get(key)
        if out is None:
            ids: set[str] = set()
            faith_named = not self._faiths.isdisjoint(key[0])
            for cid in key[0]:
                ids |= (self._out_home if country in self._home[cid] else self._out_abroad)[cid]
                if not faith_named:
                    ids |= self._implied[cid]
            out = tuple(sorted(ids))
            if len(self._emit_cache) < 4096:
                self._emit_cache[key] = out
        return out


class _Sentences:
    """Sentence numbers of positions in the title (0) and summary (1), split on demand."""

    __slots__ = ("ends", "texts")

    def __init__(self, texts: tuple[str, str]) -> None:
        self.texts = texts
        self.ends: list[list[int] | None] = [None, None]

    def _ends(self, f: int) -> list[int]:
        e = self.ends[f]
        if e is None:
            e = self.ends[f] = _sentence_ends(self.texts[f])
        return e

    def index(self, f: int, pos: int) -> int:
        return bisect_right(self.ends[f] or self._ends(f), pos)

    def span(self, f: int, n: int) -> tuple[int, int]:
        ends = self._ends(f)
        return (ends[n - 1] if n else 0), (ends[n] if n < len(ends) else len(self.texts[f]))


def _inside(span: tuple[int, int, int], f: int, s: int) -> bool:
    """Position ``s`` of field ``f`` lies inside the cause clause ``span`` (field, start, end):
    "... weeks after the Easter bombings" reports what set the item off, not the item."""
    return span[0] == f and span[1] < s < span[2]


def _background_only(type_hits: list[_H], sentences: _Sentences) -> bool:
    """Every word of the chosen type is in a summary sentence dated "in 1992": the item
    is about something else and recalls an old incident ("the temple built where mobs
    demolished a mosque in 1992")."""
    checked: dict[int, bool] = {}
    for f, s, _, _, _ in type_hits:
        if f == 0:
            return False
        n = sentences.index(f, s)
        if n not in checked:
            lo, hi = sentences.span(f, n)
            checked[n] = _has_year(sentences.texts[f], lo, hi)
        if not checked[n]:
            return False
    return True


def _ancestors(cid: str, communities: dict[str, Any]) -> tuple[str, ...]:
    chain: list[str] = []
    parent = communities[cid].parent
    while parent and parent not in chain:
        chain.append(parent)
        parent = communities[parent].parent
    return tuple(chain)


def _sentence_end(text: str, pos: int) -> tuple[int, ...]:
    ends = _sentence_ends(text, pos)
    return (ends[0] - 1,) if ends else ()


def _acted(h: _H, folded: str, acts: set[tuple[int, int]]) -> bool:
    """Whether community word ``h`` is the subject of a verb saying it acted: clergy directly
    before it ("Rabbi attacks critics"), people with one word between ("Jewish MP attacks
    Labour", "Sikh man stabs neighbour"). An adjective directly before "attacks" is not a
    subject: "anti-Muslim attacks" are attacks on Muslims."""
    f, group = h[0], h[3].group
    nxt = _next_word(folded, h[2])
    if group == "clergy":
        return (f, nxt) in acts
    if group not in _ACTOR_GROUPS:
        return False
    gap = folded.find(" ", nxt)
    return gap > nxt and (f, _next_word(folded, gap)) in acts


def _hurt_speaker(h: _H, head: tuple[int, int], folded: str, hurt: set[tuple[int, int]],
                  attacks: set[tuple[int, int]]) -> bool:
    """A community word with a speaker head ("Hindu leader", "dirigeant musulman") directly
    followed by a word of harm is the victim: "Hindu leader shot dead". ``hurt`` and
    ``attacks`` hold (field, start) of harm words and of attack words, which never speak."""
    f = h[0]
    if (f, head[0]) in attacks:  # the head is an attack word: "attackers", "gunmen"
        return False
    return (f, _next_word(folded, max(head[1], h[2]))) in hurt


def _next_word(folded: str, pos: int) -> int:
    """Start of the first word after ``pos`` (skipping the spaces punctuation folded into)."""
    n = len(folded)
    while pos < n and folded[pos] == " ":
        pos += 1
    return pos
