"""From a title and summary to communities, incident type, severity and evidence.

The rules, in order (docs/CLASSIFICATION.md explains them for lexicon editors):

1. One scan per field finds community, type, harm, escalation, aftermath and
   country terms; negative contexts have already cancelled what they cover.
2. A community word directly followed by a perpetrator head ("Buddhist mobs",
   "Israeli forces") is dropped: it names who acted, not who was targeted.
3. A community is a *target* only when a type or harm word sits in the same
   sentence; a community merely mentioned elsewhere is ignored.
4. The type is the best weighted score over the type words of the linking
   sentences (title words count 1.5x); ties go to the precedence list.
5. Natural disasters take their communities from the affected country's
   diaspora (``home_countries``), not from words in the text.
6. Severity is the highest of: the chosen type's words, harm and escalation
   words, casualty figures, CAP severity; an aftermath word in the title caps it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from prevent.classification.casualties import casualty_totals, find_casualties
from prevent.classification.lexicon import Lexicon, load_lexicon
from prevent.classification.matcher import Hit, Kind, Matcher, fold
from prevent.contracts import Evidence

FieldName = Literal["title", "summary"]
TITLE_WEIGHT = 1.5
CASUALTY_REACH = 60  # characters around a harm word searched for a casualty figure
LINK_WEIGHT = 1.5  # type words next to a targeted community say most about what happened
NATURAL_DISASTER = "natural_disaster"

_SENTENCE_END = re.compile(r"[.!?;]+(?=\s|$)")
# A full stop after these is an abbreviation ("St. Mary's", "Rev. King"), not a sentence end.
_ABBREVIATIONS = frozenset({"st", "dr", "mr", "ms", "mrs", "rev", "no", "gen", "lt", "col", "sgt",
                            "jr", "sr", "mt", "ft", "vs"})


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


_PLACE_PREPOSITIONS = (" in ", " near ", " at ", " en ", " au ", " a ", " dans ")


class Classification(BaseModel):
    model_config = ConfigDict(frozen=True)

    communities: tuple[str, ...]
    incident_type: str
    severity: int
    casualties: dict[str, int | None]
    evidence: tuple[Evidence, ...]
    country: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "communities": list(self.communities),
            "incident_type": self.incident_type,
            "severity": self.severity,
            "evidence": [e.model_dump() for e in self.evidence],
            "casualties": dict(self.casualties),
            "country": self.country,
        }


@dataclass(slots=True)
class _Located:
    hit: Hit
    field: FieldName
    sentence: tuple[str, int]


@dataclass(slots=True)
class _Scan:
    """Hits of one item, sorted by kind."""

    texts: dict[FieldName, str]
    folded: dict[FieldName, str]
    by_kind: dict[str, list[_Located]] = field(default_factory=lambda: defaultdict(list))

    def of(self, kind: str) -> list[_Located]:
        return self.by_kind.get(kind, [])

    def evidence(self, rule: str, loc: _Located) -> Evidence:
        text = self.texts[loc.field]
        return Evidence(rule=rule, term=text[loc.hit.start:loc.hit.end], field=loc.field,
                        start=loc.hit.start, end=loc.hit.end)


class Classifier:
    """A compiled lexicon. Build once (``from_dir``), then ``classify`` many items."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self._matcher = Matcher(lexicon)
        tf = lexicon.incident_types
        self._precedence = {t: i for i, t in enumerate(tf.precedence)}
        self._cap = {k.lower(): v for k, v in tf.cap_severity.items()}
        self._casualty_rules = tf.casualty_severity
        self._aftermath_cap = tf.aftermath_max_severity
        self._cause_weight = tf.cause_weight
        self._link_window = tf.link_window
        communities = {c.id: c for c in lexicon.communities.communities}
        self._ancestors = {cid: _ancestors(cid, communities) for cid in communities}
        self._implies = {cid: c.implies for cid, c in communities.items()}
        self._home = {cid: frozenset(c.home_countries) for cid, c in communities.items()}
        diaspora: dict[str, list[str]] = defaultdict(list)
        for c in communities.values():
            for code in c.home_countries:
                diaspora[code].append(c.id)
        self._diaspora = {code: tuple(ids) for code, ids in diaspora.items()}

    @classmethod
    def from_dir(cls, directory: Path) -> Classifier:
        """Load and compile ``communities.yaml`` and ``incident_types.yaml``; raises LexiconError."""
        return cls(load_lexicon(Path(directory)))

    # ------------------------------------------------------------------ public

    def classify(self, title: str, summary: str = "", *, cap_severity: str | None = None,
                 country: str | None = None) -> Classification:
        scan = self._scan(title, summary)
        found_country, country_ev = self._country(scan)
        country = found_country or (country.upper() if country else None)
        cap = self._cap.get((cap_severity or "").strip().lower())

        targets = self._targets(scan)
        itype, type_hits = self._choose_type(scan, {loc.sentence for loc in targets})
        if itype == "none" and cap is not None:
            itype = NATURAL_DISASTER  # CAP feeds carry hazard alerts; their words may be unknown

        casualty_matches = [
            (f, m) for f in scan.texts
            for m in find_casualties(scan.folded[f], self._harm_windows(scan, f))
        ]
        casualties = casualty_totals([m for _, m in casualty_matches])
        severity = self._severity(scan, itype, type_hits, casualties, cap)

        if itype == NATURAL_DISASTER:
            communities = self._diaspora.get(country or "", ())
            targets = []
        elif itype == "none":
            communities, targets = (), []
        else:
            communities = tuple({loc.hit.pattern.key for loc in targets})
        evidence = [scan.evidence(f"community:{loc.hit.pattern.key}", loc) for loc in targets]
        evidence += [scan.evidence(f"type:{itype}", loc) for loc in type_hits]
        evidence += [
            Evidence(rule="casualties", term=scan.texts[f][m.start:m.end], field=f,
                     start=m.start, end=m.end)
            for f, m in casualty_matches
        ]
        evidence += country_ev
        return Classification(
            communities=self._emit(communities, country),
            incident_type=itype,
            severity=severity,
            casualties=casualties,
            evidence=tuple(evidence),
            country=country,
        )

    # ------------------------------------------------------------------ steps

    def _scan(self, title: str, summary: str) -> _Scan:
        scan = _Scan({"title": title, "summary": summary}, {})
        for name, text in scan.texts.items():
            if not text:
                scan.folded[name] = ""
                continue
            folded = fold(text)
            scan.folded[name] = folded
            hits = self._matcher.scan(folded)
            heads = {h.start for h in hits if h.pattern.kind is Kind.NON_TARGET}
            ends = _sentence_ends(text)
            for hit in hits:
                if hit.pattern.kind is Kind.COMMUNITY and heads and _next_word(folded, hit.end) in heads:
                    continue
                scan.by_kind[hit.pattern.kind].append(
                    _Located(hit, name, (name, bisect_right(ends, hit.start))))
        return scan

    def _targets(self, scan: _Scan) -> list[_Located]:
        """Community words with a type or harm word close by in the same sentence."""
        if not scan.of(Kind.TYPE):
            return []  # harm words alone ("Pope dies at 88") are not an incident
        incident: dict[tuple[str, int], list[Hit]] = defaultdict(list)
        for loc in (*scan.of(Kind.TYPE), *scan.of(Kind.HARM)):
            incident[loc.sentence].append(loc.hit)
        window = self._link_window
        return [
            loc for loc in scan.of(Kind.COMMUNITY)
            if any(max(h.start, loc.hit.start) - min(h.end, loc.hit.end) <= window
                   for h in incident.get(loc.sentence, ()))
        ]

    def _choose_type(self, scan: _Scan, linked: set[tuple[str, int]]) -> tuple[str, list[_Located]]:
        hits = scan.of(Kind.TYPE)
        if not hits:
            return "none", []
        causes = self._cause_spans(scan, hits)
        scores: dict[str, float] = defaultdict(float)
        for loc in hits:
            weight = loc.hit.pattern.weight
            if loc.field == "title":
                weight *= TITLE_WEIGHT
            if loc.sentence in linked:
                weight *= LINK_WEIGHT
            if any(f == loc.field and s < loc.hit.start < e for f, s, e in causes):
                weight *= self._cause_weight
            scores[loc.hit.pattern.key] += weight
        last = len(self._precedence)
        best = max(scores, key=lambda t: (scores[t], -self._precedence.get(t, last)))
        return best, [loc for loc in hits if loc.hit.pattern.key == best]

    @staticmethod
    def _cause_spans(scan: _Scan, hits: list[_Located]) -> list[tuple[str, int, int]]:
        """Spans from a cause marker to the next comma or sentence end ("Following X, mobs
        attacked"), kept only where the sentence reports something outside them too:
        in "Curfew imposed after clashes" the clashes are the incident."""
        spans = []
        for loc in scan.of(Kind.CAUSE):
            text = scan.texts[loc.field]
            ends = [i for i in (text.find(",", loc.hit.end), *_sentence_end(text, loc.hit.end))
                    if i >= 0]
            start, end = loc.hit.start, min(ends, default=len(text))
            if any(h.sentence == loc.sentence and not start < h.hit.start < end for h in hits):
                spans.append((loc.field, start, end))
        return spans

    @staticmethod
    def _harm_windows(scan: _Scan, name: FieldName) -> list[tuple[int, int]]:
        """Where casualty figures can be: around the harm words, so the regex skips the rest."""
        spans = sorted((loc.hit.start, loc.hit.end) for loc in scan.of(Kind.HARM)
                       if loc.field == name and loc.hit.pattern.severity >= 2)
        windows: list[tuple[int, int]] = []
        for start, end in spans:
            start, end = max(0, start - CASUALTY_REACH), end + CASUALTY_REACH
            if windows and start <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
            else:
                windows.append((start, end))
        return windows

    def _severity(self, scan: _Scan, itype: str, type_hits: list[_Located],
                  casualties: dict[str, int | None], cap: int | None) -> int:
        if itype == "none":
            return 0
        levels = [1, cap or 0]
        levels += [loc.hit.pattern.severity for loc in type_hits]
        levels += [loc.hit.pattern.severity for loc in scan.of(Kind.HARM)]
        levels += [loc.hit.pattern.severity for loc in scan.of(Kind.ESCALATION)]
        for rule in self._casualty_rules:
            if (rule.killed and (casualties["killed"] or 0) >= rule.killed) or (
                    rule.injured and (casualties["injured"] or 0) >= rule.injured):
                levels.append(rule.severity)
        severity = max(levels)
        if any(loc.field == "title" for loc in scan.of(Kind.AFTERMATH)):
            severity = min(severity, self._aftermath_cap)
        return severity

    def _country(self, scan: _Scan) -> tuple[str | None, list[Evidence]]:
        community_spans = [(loc.field, loc.hit.start, loc.hit.end) for loc in scan.of(Kind.COMMUNITY)]
        hits = [
            loc for loc in scan.of(Kind.COUNTRY)
            # "Congregation Beth Israel" names a synagogue, not a country.
            if not any(f == loc.field and s <= loc.hit.start and loc.hit.end <= e
                       and e - s > loc.hit.end - loc.hit.start for f, s, e in community_spans)
        ]
        if not hits:
            return None, []

        def rank(loc: _Located) -> tuple[bool, bool, int]:
            before = scan.folded[loc.field][max(0, loc.hit.start - 5):loc.hit.start]
            located = before.endswith(_PLACE_PREPOSITIONS)
            # "attacked in Amsterdam" beats "fans from Israel"; the title beats the summary.
            return (not located, loc.field != "title", loc.hit.start)

        first = min(hits, key=rank)
        code = first.hit.pattern.key
        return code, [scan.evidence(f"country:{code}", first)]

    def _emit(self, communities: tuple[str, ...] | list[str], country: str | None) -> tuple[str, ...]:
        out: set[str] = set()
        for cid in communities:
            out.add(cid)
            # At home a nationality is not a minority marker: "Chinese" in China is not "asian".
            if country not in self._home[cid]:
                out.update(self._ancestors[cid])
            for implied in self._implies[cid]:
                out.add(implied)
                out.update(self._ancestors[implied])
        return tuple(sorted(out))


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


def _next_word(folded: str, pos: int) -> int:
    """Start of the first word after ``pos`` (skipping the spaces punctuation folded into)."""
    n = len(folded)
    while pos < n and folded[pos] == " ":
        pos += 1
    return pos
