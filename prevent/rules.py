"""The rules stage: classify an incident, group it, evaluate playbooks, raise or update alerts.

Pure domain logic over a database session; ``consumers/rules.py`` is the thin Kafka
wrapper. Idempotent: an incident version already processed changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import alerts, grouping, lifecycle
from prevent.classification import Classification, Classifier
from prevent.contracts import Alert, AlertStatus, FeedKind, GlobalIncident, alert_id_for, stable_id, utcnow
from prevent.playbooks.evaluate import CompiledPlaybook, CompiledSet, Subject
from prevent.storage.tables import AlertRow, IncidentRow

log = logging.getLogger("prevent.rules")
ACTOR = "rules-consumer"


@dataclass(frozen=True)
class Outcome:
    incident_id: str
    already_processed: bool
    classification: Classification | None
    cluster_id: str | None
    alerts: tuple[Alert, ...]


THREAT_LEVEL_SEVERITY = 3


def classify_incident(classifier: Classifier, incident: GlobalIncident) -> Classification:
    c = classifier.classify(
        incident.title, incident.summary,
        cap_severity=incident.cap.severity if incident.cap else None,
        country=incident.location.country if incident.location else None,
    )
    if incident.threat_level is not None:  # the watcher saw the national level change
        return c.model_copy(update={"incident_type": "threat_level_change",
                                    "severity": max(c.severity, THREAT_LEVEL_SEVERITY)})
    if incident.kind is FeedKind.PARTNER_REPORT:
        return _partner_report(c, incident)
    return c


def _partner_report(c: Classification, incident: GlobalIncident) -> Classification:
    """A partner's concern at their own site always reaches the duty inspector: it carries
    the site's communities (in its categories) and is at least a local concern."""
    site_communities = set(incident.categories) - {"partner_report", "urgent"}
    floor = 2 if "urgent" in incident.categories else 1
    return c.model_copy(update={
        "communities": tuple(sorted(set(c.communities) | site_communities)),
        "incident_type": c.incident_type if c.incident_type != "none" else "local_concern",
        "severity": max(c.severity, floor)})


def subject_of(incident: GlobalIncident, c: Classification) -> Subject:
    return Subject(
        communities=frozenset(c.communities), incident_type=c.incident_type, severity=c.severity,
        country=c.country, text=f"{incident.title}\n{incident.summary}".casefold(),
        published=incident.published, kind=incident.kind.value,
    )


async def process_batch(session: AsyncSession, incidents: Sequence[GlobalIncident],
                        classifier: Classifier, playbooks: CompiledSet, *,
                        now: datetime | None = None) -> list[Outcome]:
    """A batch in one transaction, with as few statements as possible: one query finds the
    versions already processed, and reports that concern no community and describe no
    incident (most of any news feed) are stored in one bulk insert."""
    now = now or utcnow()
    keys = [(i.incident_id, i.content_hash) for i in incidents]
    done = set((await session.execute(select(IncidentRow.incident_id, IncidentRow.content_hash)
                                       .where(tuple_(IncidentRow.incident_id,
                                                     IncidentRow.content_hash).in_(keys)))).all())
    outcomes: list[Outcome] = []
    quiet: dict[tuple[str, str], dict[str, object]] = {}
    for incident in incidents:
        key = (incident.incident_id, incident.content_hash)
        if key in done or key in quiet:
            outcomes.append(Outcome(incident.incident_id, True, None, None, ()))
            continue
        c = classify_incident(classifier, incident)
        if not c.communities and c.incident_type == "none":
            quiet[key] = _incident_values(incident, c, stable_id("clu", incident.incident_id), now)
            outcomes.append(Outcome(incident.incident_id, False, c, None, ()))
            continue
        outcomes.append(await process_incident(session, incident, classifier, playbooks, now=now,
                                               classification=c))
    if quiet:
        await session.execute(insert(IncidentRow), list(quiet.values()))
    return outcomes


def _incident_values(incident: GlobalIncident, c: Classification, cluster_id: str,
                     now: datetime) -> dict[str, object]:
    return {"incident_id": incident.incident_id, "content_hash": incident.content_hash,
            "feed_id": incident.feed_id, "cluster_id": cluster_id, "title": incident.title,
            "published_at": incident.published, "received_at": now,
            "payload": incident.model_dump(mode="json"), "classification": c.to_json()}


async def process_incident(session: AsyncSession, incident: GlobalIncident, classifier: Classifier,
                           playbooks: CompiledSet, *, now: datetime | None = None,
                           classification: Classification | None = None) -> Outcome:
    """Everything the rules stage does for one incident, in the caller's transaction.

    ``classification`` is given by ``process_batch``, which has already checked that this
    incident version was not processed before."""
    now = now or utcnow()
    if classification is None and await session.get(
            IncidentRow, (incident.incident_id, incident.content_hash)) is not None:
        return Outcome(incident.incident_id, True, None, None, ())
    c = classification or classify_incident(classifier, incident)
    cluster_id = await grouping.assign_cluster(session, incident, c)
    session.add(IncidentRow(
        incident_id=incident.incident_id, content_hash=incident.content_hash,
        feed_id=incident.feed_id, cluster_id=cluster_id, title=incident.title,
        published_at=incident.published, received_at=now,
        payload=incident.model_dump(mode="json"), classification=c.to_json(),
    ))
    subject = subject_of(incident, c)
    raised = []
    for cp in playbooks.matching(subject, now):
        alert = await _raise_or_update(session, cp, incident, c, cluster_id, now, playbooks)
        if alert is not None:
            raised.append(alert)
    return Outcome(incident.incident_id, False, c, cluster_id, tuple(raised))


async def _raise_or_update(session: AsyncSession, cp: CompiledPlaybook, incident: GlobalIncident,
                           c: Classification, cluster_id: str, now: datetime,
                           playbooks: CompiledSet) -> Alert | None:
    alert_id = alert_id_for(cluster_id, cp.playbook.id)
    row = await session.get(AlertRow, alert_id)
    if row is not None:
        existing = alerts.from_row(row)
        if existing.status in alerts.OPEN and c.severity > existing.severity:
            return await alerts.raise_severity(session, existing, severity=c.severity,
                                               incident_id=incident.incident_id, actor=ACTOR)
        await alerts.attach_report(session, existing, incident.incident_id)
        return None
    auto = cp.playbook.response.confirmation.auto_confirms(c.severity)
    alert = Alert(
        alert_id=alert_id, cluster_id=cluster_id, incident_ids=(incident.incident_id,),
        playbook_id=cp.playbook.id, playbook_version=cp.version,
        status=AlertStatus.CONFIRMED if auto else AlertStatus.PROPOSED, revision=1,
        severity=c.severity, communities=tuple(c.communities), incident_type=c.incident_type,
        title=incident.title, summary=incident.summary, country=c.country,
        evidence=tuple(c.evidence), auto_confirmed=auto, exercise=incident.exercise,
        decided_by=ACTOR if auto else None,
        note=f"auto-confirmed by playbook {cp.playbook.id} at severity {c.severity}" if auto else None,
        created_at=now, updated_at=now,
    )
    # Silences and inhibition are consulted here: a suppressed match is recorded in
    # suppressed_matches (and audited) instead of being raised and published.
    return await lifecycle.open_alert(
        session, alert, cp.playbook, incident_id=incident.incident_id,
        text=f"{incident.title}\n{incident.summary}", published=incident.published,
        priority_of=lambda pid: getattr(playbooks.source.get(pid), "priority", 0), now=now,
        actor=ACTOR)
