"""Clitic prefixes are stripped at scan time (``matcher.Matcher``), not compiled in: the
prefixed words still match, with the span of the whole word, and the automaton holds each
term once. The preparation worker imports only the classifier and the contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prevent.classification import Classifier
from prevent.classification.lexicon import load_lexicon
from prevent.classification.matcher import Kind, Matcher, fold

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"


@pytest.fixture(scope="module")
def lexicon():  # the loaded files
    return load_lexicon(PLAYBOOKS)


@pytest.mark.parametrize(("lang", "text", "word", "community"), [
    ("ar", "هجوم بالمسجد", "بالمسجد", "muslim"),
    ("ar", "إحراق وللمسجد", "وللمسجد", "muslim"),
    ("he", "ירי ובבית הכנסת", "ובבית הכנסת", "jewish"),
    ("he", "פיגוע בבית כנסת", "בבית כנסת", "jewish"),
])
def test_a_prefixed_word_matches_with_the_span_of_the_whole_word(lexicon, lang: str, text: str,
                                                                  word: str, community: str) -> None:
    matcher = Matcher(lexicon, lexicon.languages[lang])
    folded = fold(text)
    start = text.index(word)
    spans = {(s, e) for s, e, p in matcher.scan_spans(folded)
             if p.kind is Kind.COMMUNITY and p.key == community}
    assert (start, start + len(word)) in spans


@pytest.mark.parametrize(("lang", "title", "community"), [
    ("ar", "مقتل ثلاثة مصلين في هجوم بالمسجد", "muslim"),
    ("he", "מחבל פתח באש ובבית הכנסת נפצעו שלושה", "jewish"),
])
def test_prefixed_words_classify(lang: str, title: str, community: str) -> None:
    c = Classifier.from_dir(PLAYBOOKS).classify(title, "", lang=lang)
    assert community in c.communities


def test_clitic_languages_compile_each_term_once(lexicon) -> None:
    for lang in ("ar", "he"):
        lf = lexicon.languages[lang]
        assert lf.prefixes
        matcher = Matcher(lexicon, lf)
        # One key per term (not one per prefix and term: ~60,000 for Arabic, ~70,000 for Hebrew).
        assert matcher.size < 10_000
        assert len(matcher._automaton) < matcher.size + len(lf.prefixes) + 1


def test_a_word_that_only_starts_like_a_prefix_is_not_stripped_twice(lexicon) -> None:
    matcher = Matcher(lexicon, lexicon.languages["ar"])
    # "وبال" is one prefix: "وبالمسجد" is و + ب + ال + مسجد; "ووبالمسجد" is no word.
    assert any(p.key == "muslim" for _, _, p in matcher.scan_spans(fold("وبالمسجد")))
    assert not any(p.kind is Kind.COMMUNITY for _, _, p in matcher.scan_spans(fold("ووبالمسجدي")))


def test_the_preparation_worker_imports_neither_the_database_nor_the_broker_client() -> None:
    code = ("import sys, prevent.rules.prepare\n"
            "heavy = sorted(m for m in sys.modules if m == 'prevent.rules.stage' or m.split('.')[0] in "
            "('sqlalchemy', 'faststream', 'alembic', 'httpx'))\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
