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

_PATTERN = re.compile(
    # "at least 49 people were killed", "dozens injured"
    # (no leading qualifier here: an optional prefix would be tried at every position)
    rf"(?<!no )\b(?!(?:19|20)\d\d\b)(?P<n1>{_NUM}) +{_GAP}(?P<w1>{_KILLED}|{_INJURED})\b"
    # "killing three", "kills 11 worshippers", "wounding dozens"
    rf"|\b(?P<w2>killing|kills|killed|kill|wounding|wounded|injuring|injured|injures) +"
    rf"{_QUAL}(?P<n2>{_NUM})\b"
    # "leaving five dead"
    rf"|\b(?:leaving|left) +{_QUAL}(?P<n3>{_NUM}) +(?:[a-z]+ +){{0,2}}?(?P<w3>dead|injured|wounded)\b"
    # "death toll rises to 51"
    rf"|\bdeath toll +(?:[a-z]+ +){{0,3}}?(?P<n4>{_NUM})\b"
)


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


def find_casualties(folded: str, windows: list[tuple[int, int]] | None = None) -> list[CasualtyMatch]:
    """Every casualty statement in a folded text, or only within ``windows`` (start, end)."""
    out: list[CasualtyMatch] = []
    spans = windows if windows is not None else [(0, len(folded))]
    matches = (m for start, end in spans for m in _PATTERN.finditer(folded, start, end))
    for m in matches:
        raw = m.group("n1") or m.group("n2") or m.group("n3") or m.group("n4")
        word = m.group("w1") or m.group("w2") or m.group("w3") or "killed"
        n = parse_number(raw)
        if n is None or _is_year(raw, n):
            continue
        killed = not re.match(_INJURED + r"|injures", word)
        out.append(CasualtyMatch(killed, n, m.start(), m.end()))
    return out


def casualty_totals(matches: list[CasualtyMatch]) -> dict[str, int | None]:
    """The largest figure reported for each kind: later reports revise tolls upwards."""
    killed = max((m.count for m in matches if m.killed), default=None)
    injured = max((m.count for m in matches if not m.killed), default=None)
    return {"killed": killed, "injured": injured}
