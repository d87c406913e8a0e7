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
from prevent.classification.semantic import Semantic
from prevent.contracts import FeedKind, GlobalIncident, stable_id
from prevent.platform.config import Settings
from prevent.rules.grouping import Grouper
from prevent.rules.playbooks.evaluate import CompiledSet, subject_of_classification
from prevent.rules.playbooks.loader import PlaybookSet, load_directory
from prevent.rules.stage import classify_incident, subject_of


def _published(value: object) -> datetime:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def semantic_layer(settings: Settings, classifier: Classifier,
                   enabled: bool | None = None) -> Semantic | None:
    """The semantic layer, loaded in this process, when ``enabled`` (default: the setting
    ``PREVENT_SEMANTIC``); raises ValueError when it is asked for and cannot be loaded."""
    from prevent.classification.semantic import spec_for

    if not (settings.semantic if enabled is None else enabled):
        return None
    known = {c.id for c in classifier.lexicon.communities.communities}
    spec = spec_for(True, settings.semantic_model, settings.playbooks_dir, known, classifier.languages)
    layer = Semantic.from_spec(spec) if spec is not None else None
    if layer is None:
        raise ValueError(f"the semantic layer cannot be loaded ({settings.semantic_model}; "
                         "pip install 'prevent[semantic]', and see the log)")
    return layer


def classify_incidents(incidents: Iterable[GlobalIncident], settings: Settings) -> Iterator[dict[str, Any]]:
    """For `prevent feeds check --classify`: each incident's classification as the rules
    stage makes it (the source's own severity assessment included; the semantic layer when
    it is on) and the playbooks that would fire as of the incident's own publication time."""
    classifier = Classifier.from_dir(settings.playbooks_dir)
    playbooks = CompiledSet(load_directory(settings.playbooks_dir))
    layer = semantic_layer(settings, classifier)
    for incident in incidents:
        c = classify_incident(classifier, incident, layer)
        subject = subject_of(incident, c)
        fired = [cp.playbook.id for cp in playbooks.matching(subject, incident.published)]
        yield {"classification": {"communities": list(c.communities), "incident_type": c.incident_type,
                                  "severity": c.severity, "country": c.country, "lang": c.lang,
                                  "evidence": c.to_json()["evidence"]},
               "playbooks": fired}


def _items(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: invalid JSON: {exc}") from exc
        if not isinstance(item, dict):
            raise ValueError(f"line {number}: expected a JSON object")
        yield item | {"_line": number}


def _incident(item: dict[str, Any], title: str, summary: str, published: datetime) -> GlobalIncident:
    """A report as the rules stage would get it, for grouping a file's items."""
    key = item.get("id") or item["_line"]
    return GlobalIncident(
        incident_id=stable_id("inc", "classify", key), feed_id="classify", kind=FeedKind.RSS,
        title=title[:1000] or "(no title)", summary=summary[:10_000], published=published,
        first_seen=published, language=item.get("lang") if isinstance(item.get("lang"), str) else None,
        content_hash=stable_id("h", title, summary))


def classify_lines(lines: Iterable[str], settings: Settings, *, group: bool = False,
                   stored: PlaybookSet | None = None, semantic: bool | None = None) -> Iterator[str]:
    """One JSON line per input item, in input order; with ``group``, in time order with the
    cluster each report joins (grouping in memory, as the rules stage groups a batch).
    ``stored``: the playbooks to judge by (the versions in force); default: the files.
    ``semantic``: refine with the semantic layer (default: the setting)."""
    classifier = Classifier.from_dir(settings.playbooks_dir)
    layer = semantic_layer(settings, classifier, semantic)
    playbooks = CompiledSet(stored or load_directory(settings.playbooks_dir))
    items = list(_items(lines))
    if group:
        items.sort(key=lambda item: (_published(item.get("published")), item["_line"]))
    grouper = Grouper() if group else None
    for item in items:
        title, summary = str(item.get("title") or ""), str(item.get("summary") or "")
        lang = item.get("lang") if isinstance(item.get("lang"), str) else None
        country = item.get("country") if isinstance(item.get("country"), str) else None
        c = classifier.classify(title, summary, country=country, lang=lang)
        if layer is not None:
            c = layer.refine(c, title, summary)
        published = _published(item.get("published"))
        subject = subject_of_classification(c, f"{title}\n{summary}", published)
        fired = [cp.playbook.id for cp in playbooks.matching(subject, published)]
        out = c.to_json() | {"playbooks": fired}
        if grouper is not None:
            out["cluster"] = grouper.assign(_incident(item, title, summary, published), c)
        if "id" in item:
            out = {"id": item["id"], **out}
        yield json.dumps(out, ensure_ascii=False)
