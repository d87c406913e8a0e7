"""Alarm scoring, as a duty inspector sees it and as ``shared/tools/score_alarms.py`` scores
it: does each real incident (severity >= 2) alarm for a labelled community at severity >= 2
(disasters: type natural_disaster at severity >= 2), per language, and does each negative
(severity 0) stay quiet. Used by the tests and ``make bench``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prevent.classification.classify import Classifier


@dataclass
class AlarmScore:
    per_language: dict[str, list[int]] = field(default_factory=dict)  # lang -> [alarmed, incidents]
    negatives: int = 0
    negatives_alarmed: int = 0

    @property
    def recall(self) -> float:
        relevant = sum(n for _, n in self.per_language.values())
        return sum(a for a, _ in self.per_language.values()) / relevant if relevant else 0.0

    def summary(self) -> str:
        per = ", ".join(f"{k} {a}/{n}" for k, (a, n) in sorted(self.per_language.items()))
        return (f"{per}; overall {self.recall:.2f}; "
                f"negatives alarmed {self.negatives_alarmed}/{self.negatives}")


def score_alarms(clf: Classifier, items: Iterable[dict[str, Any]]) -> AlarmScore:
    """Classify each labelled item as ``prevent classify`` does (its country and declared
    language as the feed's) and count alarms."""
    out = AlarmScore()
    for item in items:
        c = clf.classify(item["title"], item.get("summary", ""), country=item.get("country"),
                         lang=item.get("lang"))
        severity = item.get("severity") or 0
        if severity >= 2:
            if item.get("incident_type") == "natural_disaster":
                hit = c.incident_type == "natural_disaster" and c.severity >= 2
            elif item.get("communities"):
                hit = bool(set(item["communities"]) & set(c.communities)) and c.severity >= 2
            else:
                continue  # an incident with no community at risk is not scored for alarms
            row = out.per_language.setdefault(item.get("lang", "en"), [0, 0])
            row[0] += hit
            row[1] += 1
        elif severity == 0:
            out.negatives += 1
            out.negatives_alarmed += bool(c.communities) and c.severity >= 2
    return out
