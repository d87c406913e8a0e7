"""One-pass, word-boundary-aware matching of every lexicon term at once.

Text is folded with ``str.translate`` so that every character maps to exactly one
character: lower case, accents stripped, anything not a letter or digit becomes a
space. Because the folded text has the same length as the original, a match's
offsets are offsets into the original field, which is what evidence needs.
One Aho-Corasick automaton holds every term of both lexicon files; a scan is a
single pass plus a boundary check per candidate.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

from prevent.classification.lexicon import Lexicon

_FOLD_RANGE = 0x3000  # Latin, Greek, Cyrillic and general punctuation; CJK passes through


def _fold_char(ch: str) -> str:
    if not ch.isalnum():
        return " "
    base = unicodedata.normalize("NFD", ch)[0]
    low = base.lower()
    return low if len(low) == 1 else base


FOLD_TABLE = {cp: _fold_char(chr(cp)) for cp in range(_FOLD_RANGE)}


def fold(text: str) -> str:
    """Lower case, accent-free, punctuation as spaces; same length as ``text``."""
    return text.translate(FOLD_TABLE)


def fold_term(term: str) -> str:
    """A lexicon term as it appears in folded text (inner spacing kept, ends trimmed)."""
    return fold(term).strip()


class Kind:
    """Kinds of lexicon pattern. Plain strings, not an Enum: they key dicts on the hot path."""

    COMMUNITY = "community"
    TYPE = "type"
    HARM = "harm"
    ESCALATION = "escalation"
    AFTERMATH = "aftermath"
    CAUSE = "cause"
    NEGATIVE = "negative"
    COUNTRY = "country"
    NON_TARGET = "non_target"


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: str  # one of the Kind constants
    key: str  # community id, incident type, country code; "" when not needed
    weight: float = 0.0
    severity: int = 0


@dataclass(frozen=True, slots=True)
class Hit:
    pattern: Pattern
    start: int
    end: int


def plural_forms(term: str) -> tuple[str, ...]:
    """The term and its English plural, so the lexicon lists each noun once."""
    if term.endswith(("s", "x", "ch", "sh", "z")):
        return term, term + "es"
    if term.endswith("y") and len(term) > 2 and term[-2] not in "aeiou":
        return term, term[:-1] + "ies"
    return term, term + "s"


def _community_patterns(lexicon: Lexicon) -> Iterable[tuple[str, Pattern]]:
    cf = lexicon.communities
    for c in cf.communities:
        pat = Pattern(Kind.COMMUNITY, c.id)
        for group, term in c.terms():
            # Names of people and places take plurals; observances are proper names.
            forms = plural_forms(term) if group != "observances" else (term,)
            for form in forms:
                yield form, pat
        for term in c.negative:
            yield term, Pattern(Kind.NEGATIVE, c.id)
    for code, names in cf.countries.items():
        for name in names:
            yield name, Pattern(Kind.COUNTRY, code)
    for head in cf.non_target_heads:
        yield head, Pattern(Kind.NON_TARGET, "")


def _incident_patterns(lexicon: Lexicon) -> Iterable[tuple[str, Pattern]]:
    tf = lexicon.incident_types
    for t in tf.types:
        for rule in t.rules:
            pat = Pattern(Kind.TYPE, t.id, rule.weight, rule.severity)
            for term in rule.terms:
                yield term, pat
        for term in t.negative:
            yield term, Pattern(Kind.NEGATIVE, t.id)
    for rule in tf.harm:
        for term in rule.terms:
            yield term, Pattern(Kind.HARM, "", 0.0, rule.severity)
    for rule in tf.escalation:
        for term in rule.terms:
            yield term, Pattern(Kind.ESCALATION, "", 0.0, rule.severity)
    for term in tf.aftermath:
        yield term, Pattern(Kind.AFTERMATH, "")
    for term in tf.cause_markers:
        yield term, Pattern(Kind.CAUSE, "")


class Matcher:
    """All lexicon terms compiled into one automaton; ``scan`` returns boundary-checked hits."""

    def __init__(self, lexicon: Lexicon) -> None:
        table: dict[str, set[Pattern]] = {}
        for source in (_community_patterns(lexicon), _incident_patterns(lexicon)):
            for term, pat in source:
                key = fold_term(term)
                if key:
                    table.setdefault(key, set()).add(pat)
        self._automaton = ahocorasick.Automaton()
        for key, pats in table.items():
            # Sorted for deterministic evidence order across runs.
            ordered = tuple(sorted(pats, key=lambda p: (p.kind, p.key, p.weight)))
            self._automaton.add_word(key, (len(key), ordered))
        self._automaton.make_automaton()
        self.size = len(table)

    def scan(self, folded: str) -> list[Hit]:
        """Every whole-word match in ``folded`` (the output of :func:`fold`), negatives applied."""
        hits: list[Hit] = []
        negatives: list[tuple[int, int]] = []
        n = len(folded)
        for last, (length, pats) in self._automaton.iter(folded):
            start, end = last - length + 1, last + 1
            if (start and folded[start - 1] != " ") or (end < n and folded[end] != " "):
                continue
            for pat in pats:
                if pat.kind is Kind.NEGATIVE:
                    negatives.append((start, end))
                else:
                    hits.append(Hit(pat, start, end))
        if negatives:
            # A negative context cancels every shorter term inside it ("Temple Run",
            # "Church Street"); a term spelled exactly like it ("bomb threat") stays.
            hits = [h for h in hits if not any(
                s <= h.start and h.end <= e and (s, e) != (h.start, h.end) for s, e in negatives)]
        return _drop_nested_types(hits)


def _drop_nested_types(hits: list[Hit]) -> list[Hit]:
    """A type phrase outvotes the words inside it: "mob attacked" is a riot, not an attack."""
    spans = [(h.start, h.end) for h in hits if h.pattern.kind is Kind.TYPE]
    if len(spans) < 2:
        return hits
    return [h for h in hits if h.pattern.kind is not Kind.TYPE or not any(
        s <= h.start and h.end <= e and e - s > h.end - h.start for s, e in spans)]
