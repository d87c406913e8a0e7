"""Casualty counts from wire-style English: "at least 49 killed", "killing three",
"dozens injured", "death toll rises to 51".

Runs on folded text (see ``matcher.fold``: lower case, punctuation as spaces, same
length as the original), so match offsets are offsets into the original field.
These are rules of English news style, not of any community, hence code not data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
# Vague quantities, taken at a conservative reading: "dozens" is at least two dozen.
_VAGUE = {"a dozen": 12, "dozen": 12, "dozens": 24, "scores": 40, "a hundred": 100,
          "hundreds": 200, "thousands": 2000}

_WORD = "|".join(sorted([*_UNITS, *_TENS, *_VAGUE], key=len, reverse=True))
_NUM = rf"(?:\d{{1,3}}(?: \d{{3}})+|\d+|(?:{_WORD})(?: (?:{'|'.join(_UNITS)}))?)"
_QUAL = (r"(?:(?:at least|more than|over|nearly|almost|around|about|some|up to|as many as"
         r"|an estimated|approximately) )?")
_KILLED = r"killed|dead|died|deaths|slain|murdered|lost their lives|perished"
_INJURED = r"injured|wounded|hurt|injuries|wounding|injuring"
_GAP = r"(?:[a-z]+ +){0,4}?"

_KILLED_WORDS = frozenset(_KILLED.split("|"))
_INJURED_WORDS = frozenset(_INJURED.split("|"))
_VERBS = frozenset({"killing", "kills", "killed", "kill", "wounding", "wounded", "injuring", "injured",
                    "injures"})
_INJURING_VERBS = frozenset({"wounding", "wounded", "injuring", "injured", "injures"})
TOLL = "death toll"
# Every word a figure can hang on; the classifier passes the spans of its harm words,
# which include all of these (tests/test_classification.py checks the lexicon).
CASUALTY_WORDS = _KILLED_WORDS | _INJURED_WORDS | _VERBS | {TOLL}
_ANCHOR = re.compile(r"\b(?:" + "|".join(sorted(CASUALTY_WORDS, key=len, reverse=True)) + r")\b")
REACH = 60  # characters before a casualty word searched for its figure

# Each pattern is tried at one place only, next to a casualty word, never scanned over the text.
# "at least 49 people were killed", "dozens injured": the figure ends a short run before the word
_BEFORE = re.compile(rf"(?<![a-z0-9])(?<!no )(?!(?:19|20)\d\d\b)(?P<n>{_NUM}) +(?:[a-z]+ +){{0,4}}$")
# "killing three", "kills 11 worshippers", "wounding dozens"
_AFTER = re.compile(rf" +{_QUAL}(?P<n>{_NUM})\b")
# "death toll rises to 51"
_TOLL = re.compile(rf" +(?:[a-z]+ +){{0,3}}?(?P<n>{_NUM})\b")


@dataclass(frozen=True, slots=True)
class CasualtyMatch:
    killed: bool  # False: injured
    count: int
    start: int
    end: int


def parse_number(text: str) -> int | None:
    """A folded number phrase ("1 200", "twenty three", "dozens") as an int."""
    text = text.strip()
    if text[:1].isdigit():
        return int(text.replace(" ", ""))
    if text in _VAGUE:
        return _VAGUE[text]
    total = 0
    for word in text.split():
        if word in _TENS:
            total += _TENS[word]
        elif word in _UNITS:
            total += _UNITS[word]
        elif word in _VAGUE:
            total += _VAGUE[word]
        else:
            return None
    return total or None


def _is_year(raw: str, n: int) -> bool:
    # "the 2019 attack killed 51": a bare four-digit year is not a count.
    return raw.isdigit() and len(raw) == 4 and 1900 <= n <= 2099


def find_casualties(folded: str, anchors: list[tuple[int, int]] | None = None) -> list[CasualtyMatch]:
    """Every casualty statement in a folded text, looked for next to ``anchors`` (the
    spans of harm words, as the classifier found them) or, by default, next to every
    casualty word in the text."""
    if anchors is None:
        anchors = [m.span() for m in _ANCHOR.finditer(folded)]
    out: list[CasualtyMatch] = []
    seen: set[tuple[int, int]] = set()
    for start, end in anchors:
        word = folded[start:end]
        if word in _KILLED_WORDS or word in _INJURED_WORDS:
            m = _BEFORE.search(folded, max(0, start - REACH), start)
            if m:
                _add(out, seen, m.group("n"), word in _KILLED_WORDS, m.start(), end)
        if word in _VERBS:
            m = _AFTER.match(folded, end)
            if m:
                _add(out, seen, m.group("n"), word not in _INJURING_VERBS, start, m.end())
        elif word == TOLL:
            m = _TOLL.match(folded, end)
            if m:
                _add(out, seen, m.group("n"), True, start, m.end())
    return out


def _add(out: list[CasualtyMatch], seen: set[tuple[int, int]], raw: str, killed: bool,
         start: int, end: int) -> None:
    n = parse_number(raw)
    if n is None or _is_year(raw, n) or (start, end) in seen:
        return
    seen.add((start, end))
    out.append(CasualtyMatch(killed, n, start, end))


def casualty_totals(matches: list[CasualtyMatch]) -> dict[str, int | None]:
    """The largest figure reported for each kind: later reports revise tolls upwards."""
    killed = max((m.count for m in matches if m.killed), default=None)
    injured = max((m.count for m in matches if not m.killed), default=None)
    return {"killed": killed, "injured": injured}


# ----------------------------------------------------------------------------- other languages

COUNT_REACH = 32  # characters on either side of a harm word searched for its figure
# A figure glued to Latin letters is an age, a thousand or an ordinal ("28enne", "50mila",
# "3e"); Tamil and Bengali glue case endings to a toll ("200ஐ", "৫০জন"), which count.
_LATIN_LETTER = r"A-Za-z\u00C0-\u024F"
_DIGITS = re.compile(rf"(?<![0-9{_LATIN_LETTER}])(\d{{1,3}}(?: \d{{3}})+|\d+)(?![0-9{_LATIN_LETTER}])")
# A figure followed by one of these is an age, a time, a year or a distance, not a count.
_NOT_COUNT_AFTER = re.compile(r" ?(?:ans|an|anos|anni|anno|jahre|jahren|jahrige|years|year|yil|yas|"
                              r"h|heures|hrs|uhr|km|kilometres|kilometers|km2|m|cm|mm|ml|kg|%|"
                              r"sal|saal|سال|ساله|عاما|عام|سنه|سنوات|साल|वर्ष|বছর|ਸਾਲ|வயது|שנה|שנים)\b"
                              # ... or a count of districts, villages, days or hours, written
                              # with the case ending glued on in Indic scripts ("৮ জেলায়").
                              r"| ?(?:জেলা|জেল|গ্রাম|দিন|ঘণ্টা|ঘন্টা|जिल|जिलों|ज़िल|गांव|गाँव|दिन|घंट|ਜ਼ਿਲ|ਜਿਲ|ਪਿੰਡ|ਦਿਨ|"
                              r"மாவட்ட|கிராம|நாட்க|மணி|ضلع|اضلاع|گاؤں|دیہات|ولایت|ولايات|محافظات|روز|ساعت|"
                              r"ימים|שעות|districts?\b|villages?\b|days?\b|hours?\b|jours\b|dias\b|giorni\b|"
                              r"tage\b|tagen\b|stunden\b|gun\b|saat\b|villaggi\b|aldeas\b|aldeias\b|villages\b)")
# Between a harm word and its figure: no clause break (in the original text) and no "and"
# joining another statement ("3 morts et 36 blessés": 36 is not the dead).
_TOKEN = re.compile(r"\S+")
_BARRIER = re.compile(r"[;:,.!?()\[\]।॥؟۔؛،]")
_CONJUNCTIONS = re.compile(r"(?:^| )(?:(?:and|et|e|y|und|ou|o|oder|or|mais|ma|pero|aber|but|ve"
                           r"|और|এবং|ਅਤੇ|اور|و|ו)(?= |$)|[وו](?=\w\w\w))")  # Arabic, Hebrew: "and" joined


def _clear(folded: str, original: str | None, lo: int, hi: int) -> bool:
    """Nothing between ``lo`` and ``hi`` separates a harm word from a figure."""
    if original is not None and _BARRIER.search(original, lo, hi):
        return False
    return _CONJUNCTIONS.search(folded[lo:hi]) is None


def _decimal(original: str | None, start: int, end: int) -> bool:
    """A figure that is part of a decimal number in the original text ("magnitude 7.8")."""
    if original is None:
        return False
    before = original[start - 2:start] if start >= 2 else ""
    after = original[end:end + 2]
    fraction = len(before) == 2 and before[0].isdigit() and before[1] in ".,٫"
    whole = len(after) == 2 and after[0] in ".,٫" and after[1].isdigit()
    return fraction or (whole and not original[end + 1:end + 4].isdigit())


_PERCENT = "%٪"


def _percent(original: str | None, start: int, end: int) -> bool:
    """A share, not a count: "20%", "20 %", Turkish "%20" (folding drops the sign)."""
    if original is None:
        return False
    after = original[end:end + 2].lstrip()
    return bool(after[:1] and after[0] in _PERCENT) or (start > 0 and original[start - 1] in _PERCENT)


def _number_words(folded: str, lo: int, hi: int, numbers: dict[str, int]) -> list[tuple[int, int, int]]:
    """Number words of the lexicon between ``lo`` and ``hi``: a two-word entry before its
    words alone ("ثلاثة عشر" is 13, not 3 and 10); none followed by a unit of time or age
    ("שלוש שנים")."""
    tokens = list(_TOKEN.finditer(folded, lo, hi))
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < len(tokens):
        m = tokens[i]
        start, end, word = m.start(), m.end(), m.group()
        if i + 1 < len(tokens) and (pair := f"{word} {tokens[i + 1].group()}") in numbers:
            end, word = tokens[i + 1].end(), pair
            i += 1
        i += 1
        if word in numbers and not _NOT_COUNT_AFTER.match(folded, end):
            out.append((start, end, numbers[word]))
    return out


def find_counts(folded: str, anchors: list[tuple[int, int]], killed: list[bool],
                numbers: dict[str, int], original: str | None = None,
                order: str = "before") -> list[CasualtyMatch]:
    """Casualty figures in a language other than English: a figure (native digits are
    already ASCII in folded text, or a number word of the language's lexicon) within
    ``COUNT_REACH`` characters of a harm word, in the same clause; one before the word is
    preferred ("15 morts", "15 लोगों की मौत"), else the nearest after it ("tue 15 fidèles");
    a language whose lexicon says ``figures: after`` prefers the figure after ("مقتل 15").
    ``original``: the text laid out like ``folded`` (same offsets), for
    its punctuation. Word order differs too much between languages for anything finer;
    the largest figure per kind still wins."""
    out: list[CasualtyMatch] = []
    seen: set[tuple[int, int]] = set()
    for (start, end), is_killed in zip(anchors, killed, strict=True):
        lo, hi = max(0, start - COUNT_REACH), min(len(folded), end + COUNT_REACH)
        figures = []
        for m in _DIGITS.finditer(folded, lo, hi):
            raw = m.group(1)
            n = int(raw.replace(" ", ""))
            if not (_is_year(raw, n) or _NOT_COUNT_AFTER.match(folded, m.end())
                    or _decimal(original, m.start(), m.end()) or _percent(original, m.start(), m.end())):
                figures.append((m.start(), m.end(), n))
        if numbers:
            figures += _number_words(folded, lo, hi, numbers)
        before = [(start - fe, fs, fe, n) for fs, fe, n in figures
                  if fe <= start and _clear(folded, original, fe, start)]
        after = [(fs - end, fs, fe, n) for fs, fe, n in figures
                 if fs >= end and _clear(folded, original, end, fs)]
        if order == "after":
            best = min(after) if after else (min(before) if before else None)
        elif order == "nearest":
            best = min(before + after) if before or after else None
        else:
            best = min(before) if before else (min(after) if after else None)
        if best is not None and (best[1], best[2]) not in seen:
            seen.add((best[1], best[2]))
            out.append(CasualtyMatch(is_killed, best[3], min(best[1], start), max(best[2], end)))
    return out
