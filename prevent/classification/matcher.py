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
# The same mapping for ASCII text (most feeds), as a byte table: ``bytes.translate`` is one
# C loop, where ``str.translate`` looks every character up in a dict (about 2.5 times slower).
_ASCII_FOLD = bytes(ord(FOLD_TABLE[b]) for b in range(128)) + bytes(range(128, 256))


def fold(text: str) -> str:
    """Lower case, accent-free, punctuation as spaces; same length as ``text``."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_FOLD).decode("ascii")
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
    CONTEXT = "context"


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: str  # one of the Kind constants
    key: str  # community id, incident type, country code; "" when not needed
    weight: float = 0.0
    severity: int = 0
    rule: str = ""  # evidence rule name ("community:muslim", "type:bombing", "country:FR")
    root: str | None = None  # communities: the faith a denomination belongs to
    needs_context: bool = False  # type words that count only in a hate context ("found dead")


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


def _faith_roots(lexicon: Lexicon) -> dict[str, str | None]:
    """Each community's faith (itself or the faith ancestor it belongs to), else None."""
    by_id = {c.id: c for c in lexicon.communities.communities}
    roots: dict[str, str | None] = {}
    for cid, c in by_id.items():
        cur, seen, root = c, set(), None
        while cur is not None and cur.id not in seen:
            seen.add(cur.id)
            if cur.kind == "faith":
                root = cur.id
            cur = by_id.get(cur.parent) if cur.parent else None
        roots[cid] = root
    return roots


def _community_patterns(lexicon: Lexicon) -> Iterable[tuple[str, Pattern]]:
    cf = lexicon.communities
    roots = _faith_roots(lexicon)
    for c in cf.communities:
        pat = Pattern(Kind.COMMUNITY, c.id, rule=f"community:{c.id}", root=roots[c.id])
        for group, term in c.terms():
            # Names of people and places take plurals; observances are proper names.
            forms = plural_forms(term) if group != "observances" else (term,)
            for form in forms:
                yield form, pat
        for term in c.negative:
            yield term, Pattern(Kind.NEGATIVE, c.id)
    for code, names in cf.countries.items():
        for name in names:
            yield name, Pattern(Kind.COUNTRY, code, rule=f"country:{code}")
    for head in cf.non_target_heads:
        yield head, Pattern(Kind.NON_TARGET, "")


def _incident_patterns(lexicon: Lexicon) -> Iterable[tuple[str, Pattern]]:
    tf = lexicon.incident_types
    for t in tf.types:
        for rule in t.rules:
            pat = Pattern(Kind.TYPE, t.id, rule.weight, rule.severity, f"type:{t.id}",
                          needs_context=rule.needs_context)
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
    for term in tf.hate_context:
        yield term, Pattern(Kind.CONTEXT, "")


def lexicon_terms(lexicon: Lexicon) -> Iterable[tuple[str, Pattern]]:
    """Every (term, pattern) of both lexicon files, plurals included, as written."""
    yield from _community_patterns(lexicon)
    yield from _incident_patterns(lexicon)


def _cancelled(outer: tuple[Pattern, ...], inner: tuple[Pattern, ...]) -> tuple[Pattern, ...]:
    """Which patterns of a term found strictly inside another term's span are dropped:
    everything inside a negative ("Temple Run", "heart attack"); type words inside a
    longer type phrase ("mob attacked" is a riot, not an attack); a faith's word inside
    another faith's phrase ("Hindu priest" is not a Christian priest)."""
    if any(p.kind is Kind.NEGATIVE for p in outer):
        return inner
    out: list[Pattern] = []
    outer_types = any(p.kind is Kind.TYPE for p in outer)
    outer_roots = {p.root for p in outer if p.kind is Kind.COMMUNITY and p.root}
    for p in inner:
        if p.kind is Kind.TYPE and outer_types:
            out.append(p)
        elif p.kind is Kind.COMMUNITY and p.root and outer_roots and p.root not in outer_roots:
            out.append(p)
    return tuple(out)


class Matcher:
    """All lexicon terms compiled into one automaton; ``scan`` returns whole-word hits.

    Keys are stored with a space on each side and the text is scanned with a space
    on each side, so the automaton only reports whole words (folded text has no other
    separator) and the hot loop needs no boundary check. Which shorter terms a longer
    one cancels (negatives, nested type phrases) is worked out here, once per key.
    """

    def __init__(self, lexicon: Lexicon) -> None:
        table: dict[str, set[Pattern]] = {}
        for term, pat in lexicon_terms(lexicon):
            key = fold_term(term)
            if key:
                table.setdefault(key, set()).add(pat)
        # Sorted for deterministic evidence order across runs.
        ordered = {key: tuple(sorted(pats, key=lambda p: (p.kind, p.key, p.weight)))
                   for key, pats in table.items()}
        probe = ahocorasick.Automaton()
        for key in ordered:
            probe.add_word(f" {key} ", key)
        probe.make_automaton()
        self._automaton = ahocorasick.Automaton()
        for key, pats in ordered.items():
            # (relative start, relative end, patterns dropped) for terms strictly inside this one
            drops = []
            for last, inner in probe.iter(f" {key} "):
                if inner == key:
                    continue
                start = last - len(inner) - 1
                dropped = _cancelled(pats, ordered[inner])
                if dropped:
                    drops.append((start, start + len(inner), frozenset(dropped)))
            kept = tuple(p for p in pats if p.kind is not Kind.NEGATIVE)
            self._automaton.add_word(f" {key} ", (len(key) + 1, kept, tuple(drops)))
        self._automaton.make_automaton()
        self.size = len(table)

    def scan_spans(self, folded: str) -> list[tuple[int, int, Pattern]]:
        """Every whole-word match in ``folded`` (the output of :func:`fold`) as
        ``(start, end, pattern)``, cancelled terms removed."""
        hits: list[tuple[int, int, Pattern]] = []
        drops: list[tuple[int, int, frozenset[Pattern]]] | None = None
        for last, (back, pats, inner) in self._automaton.iter(f" {folded} "):
            start, end = last - back, last - 1
            if inner:
                if drops is None:
                    drops = []
                drops.extend((start + s, start + e, dropped) for s, e, dropped in inner)
            for pat in pats:
                hits.append((start, end, pat))
        if drops:
            gone = {(s, e, p) for s, e, dropped in drops for p in dropped}
            hits = [h for h in hits if h not in gone]
        return hits

    def scan(self, folded: str) -> list[Hit]:
        """Like :meth:`scan_spans`, as :class:`Hit` objects."""
        return [Hit(p, s, e) for s, e, p in self.scan_spans(folded)]
