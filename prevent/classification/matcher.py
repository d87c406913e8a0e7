"""One-pass, word-boundary-aware matching of every lexicon term at once.

Text is folded with ``str.translate`` so that every character maps to exactly one
character: lower case, accents stripped, anything not a letter or digit becomes a
space. Because the folded text has the same length as the original, a match's
offsets are offsets into the original field, which is what evidence needs.
One Aho-Corasick automaton holds every term of both lexicon files; a scan is a
single pass plus a boundary check per candidate.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import ahocorasick

from prevent.classification.lexicon import (
    Community,
    HarmRule,
    LangHarmRule,
    LangTermRule,
    LanguageLexicon,
    Lexicon,
    TermRule,
)

_FOLD_RANGE = 0x3000  # Latin to Tamil and the general punctuation; CJK passes through
_COMPAT_RANGE = range(0xFB00, 0x10000)  # presentation forms (Arabic, Hebrew), full-width Latin

# Marks that spelling leaves out as often as it writes them: Arabic harakat, superscript alef
# and Quranic signs; Hebrew niqqud and cantillation; the nukta of Devanagari, Bengali,
# Gurmukhi, Gujarati and Oriya; joiners. They are deleted, so "مَسْجِد" is "مسجد".
_DROP = frozenset([*range(0x0610, 0x061B), *range(0x064B, 0x0660), 0x0670, *range(0x06D6, 0x06EE),
                   *range(0x0591, 0x05BE), 0x05BF, 0x05C1, 0x05C2, 0x05C4, 0x05C5, 0x05C7,
                   0x093C, 0x09BC, 0x0A3C, 0x0ABC, 0x0B3C, 0x0640, 0x200C, 0x200D, 0x200E, 0x200F,
                   0x00AD, 0xFEFF])
# Letter variants written for one another: Arabic and Persian/Urdu yeh and kaf, alef with
# hamza or madda, teh marbuta, Urdu heh forms.
_LETTERS = {
    "ى": "ي", "ی": "ي", "ې": "ي", "ۍ": "ي", "ئ": "ي", "ے": "ي",
    "ک": "ك", "ڪ": "ك",
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ٲ": "ا", "ٳ": "ا",
    "ؤ": "و", "ة": "ه", "ۃ": "ه", "ہ": "ه", "ھ": "ه", "ۀ": "ه", "ە": "ه",
    "ı": "i",  # Turkish dotless i: headlines write it for i and i for it
}


def _fold_char(ch: str) -> str:
    """What one character becomes in folded text: "" (dropped), one character, or, for a
    few compatibility characters, several."""
    cp = ord(ch)
    if cp in _DROP:
        return ""
    if ch in _LETTERS:
        return _LETTERS[ch]
    cat = unicodedata.category(ch)
    if cat == "Nd":  # every script's digits are ASCII digits (٣٠, ۳۰, ३०, ৩০, ੩੦, ௩௦)
        return str(unicodedata.decimal(ch))
    if cat in ("Mn", "Mc"):
        # Latin, Greek and Cyrillic accents are dropped; the vowel signs of Indic scripts are letters.
        return "" if cp < 0x0483 or 0x1AB0 <= cp < 0x1B00 or 0x1DC0 <= cp < 0x1E00 else ch
    if not ch.isalnum():
        return " "
    out = []
    for part in unicodedata.normalize("NFKD", ch):
        if ord(part) in _DROP or (unicodedata.combining(part) and ord(part) < 0x0483):
            continue
        low = part.casefold()
        out.append(_LETTERS.get(low, low) if part.isalnum() else " ")
    return "".join(out) or " "


FOLD_TABLE = {cp: _fold_char(chr(cp)) for cp in (*range(_FOLD_RANGE), *_COMPAT_RANGE)}
# The same mapping for ASCII text (most feeds), as a byte table: ``bytes.translate`` is one
# C loop, where ``str.translate`` looks every character up in a dict.
_ASCII_FOLD = bytes(ord(FOLD_TABLE[b]) for b in range(128)) + bytes(range(128, 256))
# Characters whose folded form is not exactly one character: only text holding one of them
# needs an offset map back to the original.
_VARIABLE = re.compile("[" + "".join(re.escape(chr(cp)) for cp, v in FOLD_TABLE.items() if len(v) != 1)
                       + "]")


def fold(text: str) -> str:
    """Lower case, accents and optional marks gone, letter variants unified, native digits
    as ASCII digits, punctuation as spaces. For ASCII text and most other text the result
    has exactly the length of ``text``; :func:`fold_map` gives offsets where it does not."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_FOLD).decode("ascii")
    return text.translate(FOLD_TABLE)


def fold_map(text: str) -> tuple[str, list[int] | None]:
    """``fold(text)`` and, when its length differs character by character from ``text``,
    the offset in ``text`` of every folded character (else None: offsets are the same)."""
    return fold(text), fold_layout(text)[0]


def fold_layout(text: str) -> tuple[list[int] | None, str]:
    """The offset map of :func:`fold_map` (None when ``fold(text)`` is laid out as ``text``
    is) and :func:`align` of ``text``, made together in one pass over its variable
    characters (the classifier asks for them only when it writes evidence or reads
    sentences, places and figures)."""
    if text.isascii():
        return None, text
    offsets: list[int] = []
    parts: list[str] = []
    prev = 0
    for m in _VARIABLE.finditer(text):  # identity runs between the few variable characters
        i = m.start()
        n = len(FOLD_TABLE.get(ord(text[i]), text[i]))
        offsets.extend(range(prev, i))
        offsets.extend([i] * n)
        parts += (text[prev:i], text[i] * n)
        prev = i + 1
    if not parts:
        return None, text
    offsets.extend(range(prev, len(text)))
    parts.append(text[prev:])
    return offsets, "".join(parts)


def align(text: str) -> str:
    """``text`` laid out like ``fold(text)``: each original character repeated as many times
    as it folds into (dropped marks gone, "ß" twice), so that punctuation and capitals can be
    read at folded offsets."""
    get = FOLD_TABLE.get
    return _VARIABLE.sub(lambda m: m.group() * len(get(ord(m.group()), m.group())), text)


def fold_term(term: str) -> str:
    """A lexicon term as it appears in folded text (inner spacing kept, ends trimmed)."""
    return " ".join(fold(term).split())


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
    NON_TARGET = "non_target"  # a head word after a community word: "Buddhist mobs"
    NON_TARGET_BEFORE = "non_target_before"  # a head word before it: "extrémistes hindous"
    CONTEXT = "context"
    GATHERING = "gathering"  # a religious gathering: worshippers, pilgrims, shrine
    OUTSIDER = "outsider"  # people from elsewhere: tourists, workers from other states
    BLAMED = "blamed"  # a perpetrator acting in a community's name: "Islamist", "Israeli forces"
    BLAME_HEAD = "blame_head"  # a head word that makes a community word a perpetrator: "Hindu mob"
    BLAME_BEFORE = "blame_before"  # the same, before the community word: "milicianos cristianos"
    ACTS = "acts"  # a verb form saying the people named before it acted: "Rabbi attacks critics"


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: str  # one of the Kind constants
    key: str  # community id, incident type, country code; "" when not needed
    weight: float = 0.0
    severity: int = 0
    rule: str = ""  # evidence rule name ("community:muslim", "type:bombing", "country:FR")
    root: str | None = None  # communities: the faith a denomination belongs to
    needs_context: bool = False  # type words that count only in a hate context ("found dead")
    group: str = ""  # communities: people, places, clergy, observances


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
        cur: Community | None = c
        seen: set[str] = set()
        root: str | None = None
        while cur is not None and cur.id not in seen:
            seen.add(cur.id)
            if cur.kind == "faith":
                root = cur.id
            cur = by_id.get(cur.parent) if cur.parent else None
        roots[cid] = root
    return roots


def _community_patterns(lexicon: Lexicon, lang: LanguageLexicon | None) -> Iterable[tuple[str, Pattern]]:
    cf = lexicon.communities
    roots = _faith_roots(lexicon)

    def pat(cid: str, group: str) -> Pattern:
        return Pattern(Kind.COMMUNITY, cid, rule=f"community:{cid}", root=roots[cid], group=group)

    blamed = {c.id: Pattern(Kind.BLAMED, c.id, rule=f"backlash:{c.id}") for c in cf.communities}
    if lang is None:
        for c in cf.communities:
            for group, term in c.terms():
                # Names of people and places take plurals; observances are proper names.
                forms = plural_forms(term) if group != "observances" else (term,)
                for form in forms:
                    yield form, pat(c.id, group)
            for term in c.negative:
                yield term, Pattern(Kind.NEGATIVE, c.id)
            for term in c.perpetrators:
                yield term, blamed[c.id]
        for code, names in cf.countries.items():
            for name in names:
                yield name, Pattern(Kind.COUNTRY, code, rule=f"country:{code}")
        heads: Iterable[str] = cf.non_target_heads
        blame_heads: Iterable[str] = cf.blame_heads
        blame_before: Iterable[str] = ()
        acting: Iterable[str] = cf.acting_verbs
    else:
        for cid, words in lang.communities.items():
            for group, term in words.terms():
                yield term, pat(cid, group)
            for term in words.negative:
                yield term, Pattern(Kind.NEGATIVE, cid)
            for term in words.perpetrators:
                yield term, blamed[cid]
        for code, names in lang.countries.items():
            for name in names:
                yield name, Pattern(Kind.COUNTRY, code, rule=f"country:{code}")
        heads = lang.non_target_heads
        for head in lang.non_target_before:
            yield head, Pattern(Kind.NON_TARGET_BEFORE, "")
        blame_heads, blame_before = lang.blame_heads, lang.blame_before
        acting = lang.acting_verbs
    for head in heads:
        yield head, Pattern(Kind.NON_TARGET, "")
    for head in blame_heads:
        yield head, Pattern(Kind.BLAME_HEAD, "")
    for head in blame_before:
        yield head, Pattern(Kind.BLAME_BEFORE, "")
    for verb in acting:
        yield verb, Pattern(Kind.ACTS, "")


def _incident_patterns(lexicon: Lexicon, lang: LanguageLexicon | None) -> Iterable[tuple[str, Pattern]]:
    tf = lexicon.incident_types
    types: list[tuple[str, tuple[TermRule | LangTermRule, ...], tuple[str, ...]]]
    harm: tuple[HarmRule | LangHarmRule, ...]
    escalation: tuple[HarmRule | LangHarmRule, ...]
    if lang is None:
        types = [(t.id, t.rules, t.negative) for t in tf.types]
        harm, escalation = tf.harm, tf.escalation
        aftermath, causes, context = tf.aftermath, tf.cause_markers, tf.hate_context
    else:
        types = [(tid, t.rules, t.negative) for tid, t in lang.types.items()]
        harm, escalation = lang.harm, lang.escalation
        aftermath, causes, context = lang.aftermath, lang.cause_markers, lang.hate_context
    for tid, rules, negative in types:
        for rule in rules:
            pat = Pattern(Kind.TYPE, tid, rule.weight, rule.severity, f"type:{tid}",
                          needs_context=rule.needs_context)
            for term in rule.terms:
                yield term, pat
        for term in negative:
            yield term, Pattern(Kind.NEGATIVE, tid)
    for hrule in harm:
        for term in hrule.terms:
            yield term, Pattern(Kind.HARM, "", 0.0, hrule.severity)
    for hrule in escalation:
        for term in hrule.terms:
            yield term, Pattern(Kind.ESCALATION, "", 0.0, hrule.severity)
    for term in aftermath:
        yield term, Pattern(Kind.AFTERMATH, "")
    for term in causes:
        yield term, Pattern(Kind.CAUSE, "")
    for term in context:
        yield term, Pattern(Kind.CONTEXT, "")
    # "no one was injured": a negative, so the harm word inside it is cancelled.
    for term in (tf.no_harm if lang is None else lang.no_harm):
        yield term, Pattern(Kind.NEGATIVE, "")
    gatherings = lexicon.communities.religious_gatherings if lang is None else lang.religious_gatherings
    for term in gatherings:
        yield term, Pattern(Kind.GATHERING, "")
    for term in lexicon.communities.outsiders if lang is None else lang.outsiders:
        yield term, Pattern(Kind.OUTSIDER, "")


def lexicon_terms(lexicon: Lexicon, lang: LanguageLexicon | None = None) -> Iterable[tuple[str, Pattern]]:
    """Every (term, pattern) of one language: the English base files (``lang`` None) or a
    language's lexicon file; plurals included, clitic prefixes not."""
    yield from _community_patterns(lexicon, lang)
    yield from _incident_patterns(lexicon, lang)


def _key(term: str) -> str:
    """The folded key of a lexicon term. A key ending in ``*`` matches every word that starts
    with it ("attentat*": attentats, attentato)."""
    stem = term.rstrip().endswith("*")
    key = fold_term(term.rstrip().rstrip("*"))
    return key + "*" if key and stem else key


def _cancelled(outer: tuple[Pattern, ...], inner: tuple[Pattern, ...]) -> tuple[Pattern, ...]:
    """Which patterns of a term found strictly inside another term's span are dropped:
    everything inside a negative ("Temple Run", "heart attack"); type words inside a
    longer type phrase ("mob attacked" is a riot, not an attack); a faith's word inside
    another faith's phrase ("Hindu priest" is not a Christian priest)."""
    if any(p.kind is Kind.NEGATIVE for p in outer):
        return inner
    out: list[Pattern] = []
    outer_types = any(p.kind is Kind.TYPE for p in outer)
    outer_place = any(p.kind is Kind.COUNTRY for p in outer)
    outer_roots = {p.root for p in outer if p.kind is Kind.COMMUNITY and p.root}
    for p in inner:
        if (p.kind is Kind.TYPE and outer_types) or (p.kind is Kind.COUNTRY and outer_place):
            out.append(p)  # a longer phrase of the same kind wins: "New Mexico" is not Mexico
        elif p.kind is Kind.COMMUNITY and p.root and outer_roots and p.root not in outer_roots:
            out.append(p)
    return tuple(out)


def _word_end(text: str, pos: int) -> int:
    i = text.find(" ", pos)
    return len(text) if i < 0 else i


def _stored(key: str) -> str:
    """A key as the automaton holds it: a word is padded with a space on each side, a stem
    (``attentat*``) only before, so that it matches the start of any word."""
    return f" {key[:-1]}" if key.endswith("*") else f" {key} "


# Values of prefixed keys worked out during scans and kept (a bounded cache).
_VIRTUAL_CACHE = 1 << 15

# A term found strictly inside a key: (start, end, patterns dropped), relative to the key.
_Drop: TypeAlias = tuple[int, int, frozenset[Pattern]]
# What ``Matcher._value`` works out for a key: (length + 1, stem, patterns kept,
# cancellations inside, negative stem).
_Value: TypeAlias = tuple[int, bool, tuple[Pattern, ...], tuple[_Drop, ...], bool]
# What the automaton holds for a key: its ``_Value`` and the key itself.
_Entry: TypeAlias = tuple[int, bool, tuple[Pattern, ...], tuple[_Drop, ...], bool, str]


class Matcher:
    """All terms of one language compiled into one automaton; ``scan`` returns whole-word hits.

    Keys are stored with a space on each side and the text is scanned with a space on
    each side, so the automaton only reports whole words (folded text has no other
    separator) and the hot loop needs no boundary check. A stem key (``attentat*``) is
    stored without its closing space, and its hit runs to the end of the word. Which
    shorter terms a longer one cancels (negatives, nested type phrases) is worked out
    here, once per key.

    Clitic prefixes (Arabic و ب ل ال, Hebrew ו ה ב ל...) are stripped at scan time, not
    compiled in: the automaton also holds each declared prefix (as " ال", a word start), and
    a second, anchored automaton holds every key once more behind a start mark. Each word of
    the text that starts with a prefix gives a window, the mark then the text after the
    prefix; the anchored automaton finds the keys at the start of the windows in one pass.
    A hit is reported as the key "prefix + term" spanning the prefixed word, with the
    patterns, cancellations and order that a key compiled for every prefix would have (what
    the matcher did before: ~60,000 keys and ~60 MB for Arabic, ~70,000 and ~50 MB for
    Hebrew, against ~3,000 keys each now).
    """

    def __init__(self, lexicon: Lexicon, lang: LanguageLexicon | None = None) -> None:
        prefixes = tuple(fold_term(p) for p in lang.prefixes) if lang is not None else ()
        self._prefixes = tuple(sorted({p for p in prefixes if p}, key=len))
        table: dict[str, set[Pattern]] = {}
        for term, pat in lexicon_terms(lexicon, lang):
            key = _key(term)
            if key:
                table.setdefault(key, set()).add(pat)
        self._table = {key: frozenset(pats) for key, pats in table.items()}
        self._pats_cache: dict[str, tuple[Pattern, ...]] = {}
        self._virtual: dict[str, _Entry] = {}
        # Each key once more behind a start mark ("\x02"), for the windows after a prefix; and
        # the prefixes as word starts (" ال"), each with its length.
        width = max((len(_stored(k)) for k in table), default=0)
        self._window = width
        self._anchored: Any = None
        self._markers: Any = None
        if self._prefixes and table:
            self._anchored = ahocorasick.Automaton()
            for key in table:
                stored = _stored(key)
                self._anchored.add_word("\x02" + stored[1:], (key, len(stored)))
            self._anchored.make_automaton()
            self._markers = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for prefix in self._prefixes:
                self._markers.add_word(f" {prefix}", len(prefix))
            self._markers.make_automaton()
        # Window i of a scan's windows starts at i * stride (a mark, ``width`` characters, "\n").
        self._stride = width + 2
        self._tail = "\n" * width

        def build(values: dict[str, _Value]) -> Any:
            automaton = ahocorasick.Automaton()
            for key, value in values.items():
                automaton.add_word(_stored(key), (*value, key))
            automaton.make_automaton()
            return automaton

        # First an automaton of the keys alone, to find the terms inside each key; then the
        # one scans use, with what each key keeps and cancels.
        self._automaton = build({k: (len(k.rstrip("*")) + 1, k.endswith("*"), (), (), False) for k in table})
        self._automaton = build({key: self._value(key) for key in table})
        self.size = len(table)

    # -------------------------------------------------------------- compiling

    def _pats(self, key: str) -> tuple[Pattern, ...]:
        """The patterns of a key as the text shows it: those of the term itself and of every
        term that a declared prefix joined to it spells ("بال" + "مسجد")."""
        pats = self._pats_cache.get(key)
        if pats is None:
            found: set[Pattern] = set(self._table.get(key, ()))
            for prefix in self._prefixes:
                if key.startswith(prefix):
                    found.update(self._table.get(key[len(prefix):], ()))
            # Sorted for deterministic evidence order across runs.
            pats = tuple(sorted(found, key=lambda p: (p.kind, p.key, p.weight)))
            if len(self._pats_cache) < _VIRTUAL_CACHE:
                self._pats_cache[key] = pats
        return pats

    def _value(self, key: str) -> _Value:
        """(length + 1, stem, patterns kept, cancellations inside, negative stem) of a key."""
        pats = self._pats(key)
        stem = key.endswith("*")
        body = key[:-1] if stem else key
        # (start, end, patterns dropped) for terms strictly inside this one, relative to it
        drops: list[_Drop] = []
        for last, length, inner in self._occurrences(f" {body} "):
            if inner == key:
                continue
            start = last - length + 1  # unpadded start of the inner word
            end = _word_end(body, last) if inner.endswith("*") else last - 1
            if inner.rstrip("*") == body:
                continue  # the same word as this key ("attentat" and "attentat*")
            dropped = _cancelled(pats, self._pats(inner))
            if dropped:
                drops.append((start, end, frozenset(dropped)))
        kept = tuple(p for p in pats if p.kind is not Kind.NEGATIVE)
        # A negative stem ("cyber attack*") cancels everything inside the words it covers
        # in the text, which compiling cannot see ("ਸਾਈਬਰ ਹਮਲੇ" holds "ਹਮਲੇ", not "ਹਮਲ").
        negative_stem = stem and len(kept) < len(pats)
        return (len(body) + 1, stem, kept, tuple(drops), negative_stem)

    def _prefixed_value(self, key: str) -> _Entry:
        value = self._virtual.get(key)
        if value is None:
            value = (*self._value(key), key)
            if len(self._virtual) < _VIRTUAL_CACHE:
                self._virtual[key] = value
        return value

    def _prefixed(self, padded: str) -> list[tuple[int, str]]:
        """(last, key) of the keys that start right after a clitic prefix in ``padded``, the
        prefix included in the key ("بال" + "مسجد")."""
        clitics = [(last + 1, n) for last, n in self._markers.iter(padded)]  # (end, length)
        if not clitics:
            return []
        width, stride = self._window, self._stride
        text = padded + self._tail  # every window ``width`` long
        windows = "\x02" + "\n\x02".join([text[p:p + width] for p, _ in clitics]) + "\n"
        out = []
        for last, (inner, length) in self._anchored.iter(windows):
            p, n = clitics[(last - length + 1) // stride]
            if inner.endswith("*"):
                out.append((p + length - 2, padded[p - n:p + length - 1] + "*"))
            else:
                out.append((p + length - 2, padded[p - n:p + length - 2]))
        return out

    def _entries(self, padded: str) -> Any:
        """(last, value) of every key in ``padded``, prefixed keys included, in the order one
        automaton of every key and every prefixed key would report them: by end, then longest
        first."""
        if self._anchored is None:
            return self._automaton.iter(padded)
        prefixed = self._prefixed(padded)
        if not prefixed:
            return self._automaton.iter(padded)
        # (last, -length, value): sorted by end, then longest first; no two are equal in both.
        ordered = [(last, -value[0], value) for last, value in self._automaton.iter(padded)]
        seen = {(last, back) for last, back, _ in ordered}
        for last, key in prefixed:
            back = -(len(key) if key.endswith("*") else len(key) + 1)
            if (last, back) not in seen:
                seen.add((last, back))
                ordered.append((last, back, self._prefixed_value(key)))
        ordered.sort()
        return [(last, value) for last, _, value in ordered]

    def _occurrences(self, padded: str) -> list[tuple[int, int, str]]:
        """(last, stored length, key) of every key, prefixed ones included, in ``padded``."""
        found = {(last, value[5]) for last, value in self._automaton.iter(padded)}
        if self._anchored is not None:
            found.update(self._prefixed(padded))
        return [(last, len(_stored(key)), key) for last, key in found]

    # -------------------------------------------------------------- scanning

    def scan_spans(self, folded: str) -> list[tuple[int, int, Pattern]]:
        """Every whole-word match in ``folded`` (the output of :func:`fold`) as
        ``(start, end, pattern)``, cancelled terms removed."""
        hits: list[tuple[int, int, Pattern]] = []
        drops: list[tuple[int, int, frozenset[Pattern]]] | None = None
        negative_spans: list[tuple[int, int]] | None = None
        stems_seen = False
        padded = f" {folded} "
        for last, (back, stem, pats, inner, negative_stem, _) in self._entries(padded):
            if stem:
                start = last - back + 1
                end = _word_end(folded, last)
                stems_seen = True
            else:
                start, end = last - back, last - 1
            if inner:
                if drops is None:
                    drops = []
                # A stem's last word runs on in the text ("পেস আক্রমণে"): so does whatever
                # it cancels in that word.
                body = back - 1
                for s, e, dropped in inner:
                    span = (start + s, end if stem and e == body else start + e)
                    if span != (start, end):  # a stem and a word of the same span: both stay
                        drops.append((*span, dropped))
            if negative_stem:
                if negative_spans is None:
                    negative_spans = []
                negative_spans.append((start, end))
            # Usually one pattern: a loop costs less than a generator for it (callgrind, +2%).
            for pat in pats:
                hits.append((start, end, pat))  # noqa: PERF401
        if drops:
            gone = {(s, e, p) for s, e, dropped in drops for p in dropped}
            hits = [h for h in hits if h not in gone]
        if negative_spans:
            hits = [h for h in hits if not any(s <= h[0] and h[1] <= e and (h[0], h[1]) != (s, e)
                                               for s, e in negative_spans)]
        if stems_seen:  # a word and a stem of one rule on the same word count once
            hits = list(dict.fromkeys(hits))
        return hits

    def scan(self, folded: str) -> list[Hit]:
        """Like :meth:`scan_spans`, as :class:`Hit` objects."""
        return [Hit(p, s, e) for s, e, p in self.scan_spans(folded)]
