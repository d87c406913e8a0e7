"""The classifier against the project's labelled evaluation set (and the shared dev set).

Figures are computed the way ``shared/tools/score_classify.py`` computes them: community
labels folded to a core set and scored on items of severity >= 2 (natural disasters on
type only), hate_crime and armed_attack counted as one type, a negative alarmed when it
gets a core community at severity >= 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from prevent.classification import Classifier

ROOT = Path(__file__).resolve().parents[1]
EVAL_SET = ROOT / "tests" / "data" / "incidents-eval.jsonl"
# Written before the lexicon was tuned for it (see docs/CLASSIFICATION.md): real incidents
# 2015-2025 with patterns the eval set lacks, and near-miss negatives.
HOLDOUT_SET = ROOT / "tests" / "data" / "incidents-holdout.jsonl"
DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "incidents-dev.jsonl"

CORE = {"muslim", "jewish", "christian", "sikh", "hindu", "buddhist", "lgbtq", "black", "asian",
        "indigenous"}
PARENT = {
    "lgbt": "lgbtq", "lgbtq+": "lgbtq", "catholic": "christian", "orthodox": "christian",
    "protestant": "christian", "coptic": "christian", "anglican": "christian",
    "evangelical": "christian", "assyrian": "christian", "sunni": "muslim", "shia": "muslim",
    "shiite": "muslim", "ahmadi": "muslim", "ahmadiyya": "muslim", "ismaili": "muslim",
    "east-asian": "asian", "south-asian": "asian", "southeast-asian": "asian",
    "asian-american": "asian", "chinese": "asian", "korean": "asian", "japanese": "asian",
    "vietnamese": "asian", "filipino": "asian", "african-american": "black", "african": "black",
    "caribbean": "black", "first-nations": "indigenous", "inuit": "indigenous",
    "metis": "indigenous",
}
TYPE_FOLD = {"hate_crime": "armed_attack"}


def core(communities: list[str] | tuple[str, ...]) -> set[str]:
    folded = (PARENT.get(c.lower().replace("_", "-"), c.lower().replace("_", "-"))
              for c in communities)
    return {c for c in folded if c in CORE}


@dataclass
class Figures:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    type_ok: int = 0
    type_n: int = 0
    negatives: int = 0
    alarmed: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def type_accuracy(self) -> float:
        return self.type_ok / self.type_n if self.type_n else 0.0

    @property
    def alarm_rate(self) -> float:
        return self.alarmed / self.negatives if self.negatives else 0.0

    def line(self) -> str:
        return (f"communities P={self.precision:.2f} R={self.recall:.2f} "
                f"(tp={self.tp} fp={self.fp} fn={self.fn}); negatives alarmed "
                f"{self.alarmed}/{self.negatives}; incident type acc={self.type_accuracy:.2f}")


def evaluate(clf: Classifier, path: Path) -> tuple[Figures, list[str]]:
    fig, misses = Figures(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        got = clf.classify(item["title"], item.get("summary", ""), country=item.get("country"))
        severity = item.get("severity") or 0
        want, have = core(item.get("communities") or []), core(got.communities)
        if severity >= 2 and item["incident_type"] == "natural_disaster":
            fig.type_n += 1
            fig.type_ok += got.incident_type == "natural_disaster"
        elif severity >= 2:
            fig.tp += len(want & have)
            fig.fn += len(want - have)
            fig.fp += len(have - want)
            fig.type_n += 1
            ok = TYPE_FOLD.get(got.incident_type, got.incident_type) == TYPE_FOLD.get(
                item["incident_type"], item["incident_type"])
            fig.type_ok += ok
            if want != have or not ok:
                misses.append(f"{item['title'][:70]}: want {sorted(want)} {item['incident_type']}"
                              f", got {sorted(have)} {got.incident_type}")
        elif severity == 0:
            fig.negatives += 1
            if have and got.severity >= 2:
                fig.alarmed += 1
                misses.append(f"false alarm: {item['title'][:70]}")
    return fig, misses


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.from_dir(ROOT / "playbooks")


@pytest.mark.parametrize(("path", "size", "negatives"), [(EVAL_SET, 150, 40), (HOLDOUT_SET, 60, 20)])
def test_labelled_sets_are_large_and_well_formed(path: Path, size: int, negatives: int) -> None:
    items = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(items) >= size
    assert sum(1 for i in items if i["severity"] == 0) >= negatives
    for item in items:
        assert {"title", "summary", "published", "country", "communities", "incident_type",
                "severity", "source"} <= item.keys()
        assert 0 <= item["severity"] <= 4
        if item["incident_type"] == "natural_disaster":
            assert item.get("diaspora_of")


DEV_PRESENT = pytest.mark.skipif(not DEV_SET.exists(), reason="shared dev set not present")


@pytest.mark.parametrize(("name", "path"), [("eval", EVAL_SET), ("holdout", HOLDOUT_SET),
                                            pytest.param("dev", DEV_SET, marks=DEV_PRESENT)])
def test_labelled_sets_meet_the_bars(clf: Classifier, name: str, path: Path) -> None:
    fig, misses = evaluate(clf, path)
    print(f"\n{name}:", fig.line())
    for miss in misses:
        print("  ", miss)
    # the bars shared/tools/score_classify.py applies by default
    assert fig.precision >= 0.92, fig.line()
    assert fig.recall >= 0.92, fig.line()
    assert fig.type_accuracy >= 0.80, fig.line()
    assert fig.alarm_rate <= 0.05, fig.line()
