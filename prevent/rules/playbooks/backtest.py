"""Playbook tools for engagement officers: backtests, golden cases, and explanations.

All of them run the same path as the rules consumer — classify, build the subject,
evaluate the compiled playbooks — only without Kafka or stored effects.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from prevent.classification import Classification, Classifier
from prevent.platform.yamlsource import SourceError, read_model
from prevent.rules.playbooks.evaluate import CompiledSet, RuleResult, Subject, subject_of_classification


class IncidentInput(BaseModel):
    """An incident as officers write it in a file (JSON lines or a case)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    title: str
    summary: str = ""
    published: AwareDatetime | None = None
    country: str | None = None
    cap_severity: str | None = None
    # The source's kind and categories (stored incidents): a partner report is judged as the
    # rules stage judges it (its site's communities, a floor on severity, source partner_report).
    kind: str = ""
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    incident: IncidentInput
    classification: Classification
    fired: tuple[str, ...]


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def subject_for(item: IncidentInput, c: Classification, published: datetime) -> Subject:
    return subject_of_classification(c, f"{item.title}\n{item.summary}", published, item.kind)


def classify_item(classifier: Classifier, item: IncidentInput) -> Classification:
    """The classification the rules stage would make of ``item`` (partner reports included)."""
    c = classifier.classify(item.title, item.summary, cap_severity=item.cap_severity,
                            country=item.country)
    if item.kind == "partner_report":
        from prevent.rules.stage import _partner_report  # the stage's own rule, not a copy

        c = _partner_report(c, item.categories)
    return c


def evaluate(items: Iterable[IncidentInput], classifier: Classifier, playbooks: CompiledSet,
             at: datetime | None = None) -> Iterator[Verdict]:
    """Each incident judged at ``at`` (default: its own publication time)."""
    for item in items:
        c = classify_item(classifier, item)
        published = item.published or at or datetime.now(UTC)
        subject = subject_for(item, c, published)
        fired = tuple(cp.playbook.id for cp in playbooks.matching(subject, at or published))
        yield Verdict(item, c, fired)


def read_jsonl(path: Path) -> list[IncidentInput]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                items.append(IncidentInput.model_validate(json.loads(line)))
            except ValueError as exc:
                raise SourceError([f"{path}:{number}: {exc}"]) from exc
    return items


def summarize(verdicts: Iterable[Verdict]) -> tuple[Counter[str], dict[str, list[str]]]:
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for v in verdicts:
        for pid in v.fired:
            counts[pid] += 1
            examples.setdefault(pid, []).append(v.incident.title)
    return counts, examples


# ------------------------------------------------------------------ golden cases


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fire: list[str] = []
    not_fire: list[str] = []
    communities: list[str] = Field(default=[], description="must all be among the classified ones")
    backlash: list[str] = Field(default=[], description="must all be among those at risk of backlash")
    not_communities: list[str] = Field(default=[], description="must not be targeted (e.g. the "
                                       "perpetrators' community)")
    incident_type: str | None = None
    min_severity: int | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    at: AwareDatetime
    incident: IncidentInput
    expect: Expectation


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cases: list[Case]


@dataclass
class CaseResult:
    source: str
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def run_case(case: Case, classifier: Classifier, playbooks: CompiledSet, source: str) -> CaseResult:
    verdict = next(evaluate([case.incident], classifier, playbooks, at=case.at))
    result = CaseResult(source, case.name)
    want = case.expect
    fired = set(verdict.fired)
    result.problems += [f"expected playbook {p} to fire" for p in want.fire if p not in fired]
    result.problems += [f"playbook {p} fired but must not" for p in want.not_fire if p in fired]
    c = verdict.classification
    result.problems += [f"community {x} not found (got {list(c.communities)})"
                        for x in want.communities if x not in c.communities]
    result.problems += [f"backlash community {x} not found (got {list(c.backlash)})"
                        for x in want.backlash if x not in c.backlash]
    result.problems += [f"community {x} is named as targeted but must not be"
                        for x in want.not_communities if x in c.communities]
    if want.incident_type and c.incident_type != want.incident_type:
        result.problems.append(f"incident type {c.incident_type}, expected {want.incident_type}")
    if want.min_severity is not None and c.severity < want.min_severity:
        result.problems.append(f"severity {c.severity}, expected at least {want.min_severity}")
    return result


def run_cases(directory: Path, classifier: Classifier, playbooks: CompiledSet) -> list[CaseResult]:
    return [run_case(case, classifier, playbooks, str(path))
            for path in sorted(directory.glob("*.yaml")) for case in read_model(CaseFile, path).cases]


# ------------------------------------------------------------------ explain


def explain(item: IncidentInput, classifier: Classifier, playbooks: CompiledSet,
            at: datetime | None = None, only: str | None = None
            ) -> tuple[Classification, list[tuple[str, int, list[RuleResult]]]]:
    c = classify_item(classifier, item)
    published = item.published or at or datetime.now(UTC)
    subject = subject_for(item, c, published)
    rows = [(cp.playbook.id, cp.version, cp.explain(subject, at or published))
            for cp in playbooks.compiled if only in (None, cp.playbook.id)]
    return c, rows


def incident_from_payload(p: dict[str, Any]) -> IncidentInput:
    """A stored incident's JSON payload as a backtest input (the console's editor and the CLI)."""
    location = p.get("location") or {}
    cap = p.get("cap") or {}
    return IncidentInput(id=p["incident_id"], title=p["title"], summary=p.get("summary", ""),
                         published=p["published"], country=location.get("country"),
                         cap_severity=cap.get("severity"), kind=p.get("kind") or "",
                         categories=tuple(p.get("categories") or ()))
