"""Classifying an incident and encoding its row's JSON columns: what the rules stage does
before it needs the database, here or in its preparation worker (``prevent.rules.pool``).

This module imports only the classifier and the contracts. A preparation worker is a spawned
process that imports what its functions live in: from here it loads about 35 MB of modules,
where ``prevent.rules.stage`` (SQLAlchemy, FastStream, alembic, httpx) would load about 100 MB.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import orjson

from prevent.classification import Classification, Classifier
from prevent.classification.classify import NATURAL_DISASTER, ClassificationTuple, with_assessment
from prevent.classification.lexicon import Lexicon
from prevent.classification.sources import assess
from prevent.contracts import FeedKind, GlobalIncident

if TYPE_CHECKING:
    from prevent.classification.semantic import Semantic, SemanticSpec

log = logging.getLogger("prevent.rules.pool")
THREAT_LEVEL_SEVERITY = 3


class Prepared(NamedTuple):
    """What the stage computes for an incident version before it needs the database: its
    classification, and the two JSON columns of its row already encoded. Made by ``prepare``,
    here or in the rules consumer's worker process (``prevent.rules.pool``); a tuple, since
    the consumer rebuilds one per incident from what the worker sends."""

    classification: Classification
    classification_json: str
    payload_json: str


def classify_incident(classifier: Classifier, incident: GlobalIncident,
                      semantic: Semantic | None = None) -> Classification:
    """The stage's classification. ``semantic``: the optional semantic layer (loaded only in
    a preparation worker or a CLI process, never on an event loop); None: the lexicon alone."""
    return classify_incidents(classifier, [incident], semantic)[0]


def classify_incidents(classifier: Classifier, incidents: Sequence[GlobalIncident],
                       semantic: Semantic | None = None) -> list[Classification]:
    """``classify_incident`` for each, the items the semantic layer reads embedded together."""
    cs = [_lexical(classifier, incident) for incident in incidents]
    if semantic is not None:
        cs = semantic.refine_many(cs, [(i.title, i.summary) for i in incidents])
    return [_with_source(c, incident) for c, incident in zip(cs, incidents, strict=True)]


def _lexical(classifier: Classifier, incident: GlobalIncident) -> Classification:
    cap = incident.cap
    return classifier.classify(
        incident.title, incident.summary,
        cap_severity=cap.severity if cap else None,
        country=incident.location.country if incident.location else None,
        lang=incident.language,
    )


def _with_source(c: Classification, incident: GlobalIncident) -> Classification:
    """``c`` with what the source itself says: a threat-level change, a partner's report, a
    disaster's own assessment (``sources.assess``)."""
    cap = incident.cap
    if incident.threat_level is not None:  # the watcher saw the national level change
        return c.model_copy(update={"incident_type": "threat_level_change",
                                    "severity": max(c.severity, THREAT_LEVEL_SEVERITY)})
    if incident.kind is FeedKind.PARTNER_REPORT:
        return _partner_report(c, incident.categories)
    assessed = assess(incident.categories, cap.severity if cap else None, cap.msg_type if cap else None,
                      cap.urgency if cap else None, cap.certainty if cap else None,
                      cap.event if cap else None)
    if assessed is not None and c.incident_type == NATURAL_DISASTER:
        return with_assessment(c, assessed)
    return c


def _partner_report(c: Classification, categories: Sequence[str]) -> Classification:
    """A partner's concern at their own site always reaches the duty inspector: it carries
    the site's communities (in its ``categories``) and is at least a local concern."""
    site_communities = set(categories) - {"partner_report", "urgent"}
    floor = 2 if "urgent" in categories else 1
    return c.model_copy(update={
        "communities": tuple(sorted(set(c.communities) | site_communities)),
        "incident_type": c.incident_type if c.incident_type != "none" else "local_concern",
        "severity": max(c.severity, floor)})


def prepare(classifier: Classifier, incident: GlobalIncident, semantic: Semantic | None = None) -> Prepared:
    return prepared_with(incident, classify_incident(classifier, incident, semantic))


def prepared_with(incident: GlobalIncident, c: Classification) -> Prepared:
    return Prepared(c, orjson.dumps(c.to_json()).decode(), incident.model_dump_json())


# ----------------------------------------------------------------------------- the worker

# The payload is None when it is the record's value itself (the usual case: every producer of
# incidents serialises them as the stage does), so that it crosses the pipe only once.
Sent = tuple[ClassificationTuple, str, str | None]
_classifier: Classifier | None = None  # the worker's own, built once by ``start_worker``
_semantic: Semantic | None = None  # the worker's semantic layer, when it is on
# ``prevent.platform.runtime.settle_heap``'s young-generation threshold (that module is not imported
# here: it brings the broker client).
_GC_YOUNG_THRESHOLD = 20_000


def start_worker(lexicon: Lexicon, parent: int, semantic: SemanticSpec | None = None) -> None:
    """A preparation worker's initializer. ``semantic``: load the embedding model and embed
    the exemplars here (the consumer's process never loads them)."""
    global _classifier, _semantic
    _classifier = Classifier(lexicon)  # the consumer's own lexicon, not the files as they are now
    _classifier.warm()  # every language's automaton now, not on the first item in it
    if semantic is not None:
        from prevent.classification.semantic import Semantic

        _semantic = Semantic.from_spec(semantic)  # None (logged) if the model fails to load
        if _semantic is not None:
            log.info("semantic layer on in the preparation worker: %s, %d exemplars",
                     _semantic.embedder.name, len(_semantic.bank.entries))
    # As in the consumer (``settle_heap``): a part allocates a great many short-lived objects.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *thresholds[1:])
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """A consumer killed with SIGKILL cannot stop its worker: the worker stops itself."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def worker_ready() -> bool:
    return _classifier is not None


def prepare_records(values: list[bytes]) -> list[Sent]:
    """A worker's part: each record's classification (as a tuple) and row columns."""
    assert _classifier is not None, "worker started without its initializer"
    incidents = [GlobalIncident.model_validate_json(value) for value in values]
    sent: list[Sent] = []
    for value, incident, c in zip(values, incidents, classify_incidents(_classifier, incidents, _semantic),
                                  strict=True):
        p = prepared_with(incident, c)
        payload = None if p.payload_json.encode() == value else p.payload_json
        sent.append((p.classification.as_tuple(), p.classification_json, payload))
    return sent
