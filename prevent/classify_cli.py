"""`prevent classify`: the stable contract reviewers evaluate the classifier with.

Input: JSON lines with at least ``title``, ``summary``, ``published`` (and optionally
``link``, ``country``). Output: one JSON line per input line, in order, with
``communities``, ``incident_type``, ``severity``, ``playbooks`` and ``evidence``.
Playbooks are evaluated as of the item's own publication time, so historical
items are judged as they would have been when they happened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prevent.classification import Classifier
from prevent.config import Settings
from prevent.contracts import GlobalIncident
from prevent.playbooks.evaluate import CompiledSet, subject_of_classification
from prevent.playbooks.loader import load_directory
from prevent.rules import classify_incident, subject_of


def _published(value: object) -> datetime:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def classify_incidents(incidents: Iterable[GlobalIncident], settings: Settings) -> Iterator[dict[str, Any]]:
    """For `prevent feeds check --classify`: each incident's classification as the rules
    stage makes it (the source's own severity assessment included) and the playbooks that
    would fire as of the incident's own publication time."""
    classifier = Classifier.from_dir(settings.playbooks_dir)
    playbooks = CompiledSet(load_directory(settings.playbooks_dir))
    for incident in incidents:
        c = classify_incident(classifier, incident)
        subject = subject_of(incident, c)
        fired = [cp.playbook.id for cp in playbooks.matching(subject, incident.published)]
        yield {"classification": {"communities": list(c.communities), "incident_type": c.incident_type,
                                  "severity": c.severity, "country": c.country, "lang": c.lang,
                                  "evidence": c.to_json()["evidence"]},
               "playbooks": fired}


def classify_lines(lines: Iterable[str], settings: Settings) -> Iterator[str]:
    classifier = Classifier.from_dir(settings.playbooks_dir)
    playbooks = CompiledSet(load_directory(settings.playbooks_dir))
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: invalid JSON: {exc}") from exc
        if not isinstance(item, dict):
            raise ValueError(f"line {number}: expected a JSON object")
        title, summary = str(item.get("title") or ""), str(item.get("summary") or "")
        lang = item.get("lang") if isinstance(item.get("lang"), str) else None
        c = classifier.classify(title, summary, country=item.get("country"), lang=lang)
        published = _published(item.get("published"))
        subject = subject_of_classification(c, f"{title}\n{summary}", published)
        fired = [cp.playbook.id for cp in playbooks.matching(subject, published)]
        out = c.to_json() | {"playbooks": fired}
        if "id" in item:
            out = {"id": item["id"], **out}
        yield json.dumps(out, ensure_ascii=False)
