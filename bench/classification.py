"""Throughput of classification + playbook matching, against a naive regex baseline.

``python -m bench.classification`` prints one JSON object. Both figures are measured in
the same process on one core (``os.sched_setaffinity`` where available) with
``time.process_time``, over the evaluation set's items (title + summary):

* ``items_per_s``: ``Classifier.classify`` plus matching the result against 50
  playbooks (variants of ``playbooks/place-of-worship-attack.yaml``), the way
  ``prevent classify`` does for each line;
* ``baseline_items_per_s``: the naive approach, one compiled case-insensitive,
  word-bounded regular expression per lexicon term, each searched over the item.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path
from typing import Any

import yaml

from prevent.classification import Classifier, load_lexicon
from prevent.classification.matcher import fold_term, lexicon_terms
from prevent.rules.playbooks.evaluate import CompiledSet, subject_of_classification
from prevent.rules.playbooks.loader import PlaybookSet
from prevent.rules.playbooks.schema import Playbook

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
ITEMS = ROOT / "tests" / "data" / "incidents-eval.jsonl"
N_PLAYBOOKS = 50

_FAITHS = ("muslim", "jewish", "christian", "sikh", "hindu", "buddhist", "jain", "bahai")
_OTHERS = ("lgbtq", "black", "asian", "indigenous", "immigrant", "hispanic", "arab")
_TYPES = (("armed_attack", "bombing", "arson", "hate_crime"), ("riot", "vandalism"),
          ("terror_threat",), ("armed_attack", "hate_crime"), ())
_COUNTRIES = ((), ("CA",), ("US", "CA"), ("GB", "FR", "DE"), ("IN", "PK", "BD"), ())
_KEYWORDS: tuple[dict[str, list[str]], ...] = (
    {}, {"any": ["mosque", "synagogue", "church", "temple", "gurdwara"]},
    {"none": ["anniversary", "sentenced", "trial"]}, {},
    {"any": ["killed", "dead", "injured", "wounded"], "none": ["drill"]})


def bench_playbooks(n: int = N_PLAYBOOKS) -> PlaybookSet:
    """``n`` variants of the place-of-worship playbook: communities, types, severities,
    countries and keywords all vary, so candidate lookup and every predicate do work."""
    base = yaml.safe_load((PLAYBOOKS / "place-of-worship-attack.yaml").read_text(encoding="utf-8"))
    groups = [list(_FAITHS), *([c] for c in _FAITHS + _OTHERS), ["lgbtq", "black", "asian"]]
    out = []
    for i, (communities, types, countries, keywords) in enumerate(
            zip(cycle(groups), cycle(_TYPES), cycle(_COUNTRIES), cycle(_KEYWORDS), strict=False)):
        if i == n:
            break
        data = json.loads(json.dumps(base, default=str))
        data["id"] = f"bench-{i:02d}-{communities[0]}"
        data["priority"] = 10 + i
        match = data["match"]
        match["communities"] = {"any": communities}
        match["incident_types"] = list(types)
        match["min_severity"] = 1 + i % 4
        match["countries"] = {"include": list(countries)}
        match["keywords"] = keywords
        match["max_age_hours"] = None
        out.append(Playbook.model_validate(data))
    return PlaybookSet(tuple(out), {p.id: 0 for p in out})


def load_items(path: Path = ITEMS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _published(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["published"]).replace(tzinfo=UTC)


class NaiveBaseline:
    """What the classifier replaced: every lexicon term as its own regular expression."""

    def __init__(self, directory: Path = PLAYBOOKS) -> None:
        terms = sorted({fold_term(t) for t, _ in lexicon_terms(load_lexicon(directory))} - {""})
        self.patterns = [
            re.compile(r"\b" + r"\W+".join(map(re.escape, t.split())) + r"\b", re.IGNORECASE)
            for t in terms]

    def scan(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for p in self.patterns for m in p.finditer(text)]


def _timed(fn: Any, items: list[Any], seconds: float) -> float:
    """Items per CPU second, looping over ``items`` for at least ``seconds``."""
    for item in items[:20]:  # warm up caches
        fn(item)
    done, start = 0, time.process_time()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed


def run(seconds: float = 5.0) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):  # not allowed here: measured unpinned
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    clf = Classifier.from_dir(PLAYBOOKS)
    playbooks = CompiledSet(bench_playbooks())
    baseline = NaiveBaseline()
    items = [(i["title"], i.get("summary", ""), i.get("country"), _published(i)) for i in load_items()]

    def ours(item: tuple[str, str, str | None, datetime]) -> int:
        title, summary, country, published = item
        c = clf.classify(title, summary, country=country)
        subject = subject_of_classification(c, f"{title}\n{summary}", published)
        return len(playbooks.matching(subject, published))

    def naive(item: tuple[str, str, str | None, datetime]) -> int:
        return len(baseline.scan(f"{item[0]}\n{item[1]}"))

    rate = _timed(ours, items, seconds * 0.8)
    base = _timed(naive, items, seconds * 0.2)
    return {
        "items_per_s": round(rate),
        "baseline_items_per_s": round(base),
        "ratio": round(rate / base, 1),
        "playbooks": len(playbooks.compiled),
        "lexicon_terms": len(baseline.patterns),
        "items": len(items),
        "playbooks_fired": sum(ours(i) for i in items),  # over one pass of the items
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
