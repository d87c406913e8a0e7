"""The alert lifecycle as a service: role checks, raising (with silences, inhibition and
escalation timers), decisions with conflict handling, the detail view and exercises.

``prevent.alerts.states`` holds the state machine itself (the one place transitions are
decided); this module is what the rules stage, the API and the CLI call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.alerts import escalation
from prevent.alerts import states as alerts
from prevent.alerts.audience import resolve_audience
from prevent.contracts import Alert, AlertStatus, Scope, alert_id_for, stable_id, utcnow
from prevent.platform.retrying import retrying
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AlertRow, EscalationTimer, IncidentRow, PatrolRow, SuppressedMatch
from prevent.platform.yamlsource import parse_model
from prevent.rules import suppression
from prevent.rules.playbooks import store
from prevent.rules.playbooks.schema import Playbook
from prevent.users import Principal, Role, require

log = logging.getLogger("prevent.alerts.lifecycle")
DECIDERS = (Role.DUTY_INSPECTOR,)
EXERCISERS = (Role.DUTY_INSPECTOR, Role.ENGAGEMENT_OFFICER)
USER_ACTIONS = ("confirm", "dismiss", "close")  # expire belongs to the escalator
REPORTS_SHOWN = 200  # source reports listed on an alert's page (all are counted)


async def open_alert(session: AsyncSession, alert: Alert, playbook: Playbook, *, incident_id: str,
                     text: str, published: datetime, priority_of: Callable[[str], int],
                     now: datetime, actor: str, ttl: timedelta = escalation.DEFAULT_TTL
                     ) -> Alert | None:
    """Raise a new alert unless a silence or an inhibition applies (then record the match and
    return None); a proposed alert gets its escalation and expiry timers."""
    if await suppression.gate(session, alert, incident_id=incident_id, text=text,
                              priority_of=priority_of, now=now) is not None:
        log.info("alert %s not raised: suppressed", alert.alert_id)
        return None
    created = await alerts.create(session, alert, actor=actor)
    if created.status is AlertStatus.PROPOSED:
        await escalation.schedule(session, created, playbook, published=published, ttl=ttl)
    return created


def _is_contention(exc: DBAPIError) -> bool:
    """SQLite's writer lock or a PostgreSQL serialization failure: retrying is safe."""
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return "database is locked" in text or code in ("40001", "40P01")


async def decide(db: Database, principal: Principal, alert_id: str, *, action: str,
                 expected_revision: int, note: str | None = None, scope: Scope | None = None,
                 disposition: str | None = None, attempts: int = 5) -> Alert:
    """Confirm, dismiss or close, as ``principal``. Of two concurrent deciders one wins; the
    other gets :class:`alerts.AlertConflict` naming the winner."""
    require(principal, *DECIDERS, action=f"{action} alerts")
    if action not in USER_ACTIONS:
        raise alerts.IllegalTransition(f"'{action}' is not a decision a user can take; "
                                       f"use one of {', '.join(USER_ACTIONS)}")
    decision = alerts.Decision(action=action, actor=principal.name, expected_revision=expected_revision,
                               note=note, scope=scope, disposition=disposition)
    # Lost the race for the write lock: re-read; the revision check then names the winner.
    async for attempt in retrying(
            retry_on=lambda exc: isinstance(exc, DBAPIError) and _is_contention(exc),
            attempts=attempts, base=0.05, cap=1.0):
        with attempt:
            async with db.transaction() as session:
                return await alerts.decide(session, alert_id, decision)
    raise AssertionError("unreachable: retrying() returns or raises")


async def playbook_for(session: AsyncSession, alert: Alert) -> Playbook:
    """The exact playbook version the alert was raised under."""
    row = await store.get_version(session, alert.playbook_id, alert.playbook_version)
    if row is None:
        current = (await store.current_set(session)).get(alert.playbook_id)
        if current is None:
            raise alerts.AlertError(f"playbook {alert.playbook_id} v{alert.playbook_version} "
                                    "is not stored")
        return current
    return parse_model(Playbook, row.source, f"{alert.playbook_id}@v{alert.playbook_version}")


async def preview(session: AsyncSession, alert: Alert) -> dict[str, Any]:
    """Who would be notified and where patrols would go: the same function the notifiers use.
    Ids, names and channels only; addresses stay in the registry."""
    plan = await resolve_audience(session, alert, await playbook_for(session, alert))
    return {
        "sites": list(plan.sites),
        # Sites in the audience only through the diasporas they serve, and why.
        "reasons": dict(plan.reasons),
        "recipients": [asdict(r) for r in plan.recipients],
        "patrols": [{"site_id": p.site_id, "site_name": p.site_name, "zone_id": p.zone_id,
                     "every_minutes": p.plan.every_minutes, "duration_hours": p.plan.duration_hours,
                     "priority": p.plan.priority} for p in plan.patrols],
    }


async def detail(session: AsyncSession, alert_id: str) -> dict[str, Any]:
    alert = await alerts.get(session, alert_id)
    # Every report of the event is in the alert's cluster (the alert names only the first).
    in_cluster = IncidentRow.cluster_id == alert.cluster_id
    incidents = (await session.execute(select(IncidentRow).where(in_cluster).order_by(
        IncidentRow.published_at, IncidentRow.incident_id).limit(REPORTS_SHOWN))).scalars().all()
    report_count = (await session.execute(
        select(func.count()).select_from(IncidentRow).where(in_cluster))).scalar_one()
    patrols = (await session.execute(select(PatrolRow).where(
        PatrolRow.alert_id == alert_id).order_by(PatrolRow.assignment_id))).scalars().all()
    timers = (await session.execute(select(EscalationTimer).where(
        EscalationTimer.alert_id == alert_id).order_by(EscalationTimer.due_at))).scalars().all()
    trail = await audit.entries(session, subject=alert_id)
    return {
        "alert": alert.model_dump(mode="json"),
        "report_count": report_count,
        "patrols": [{"site_id": p.site_id, "zone": p.zone_id, "status": p.status,
                     "ends_at": p.payload["ends_at"], "every_minutes": p.payload["every_minutes"]}
                    for p in patrols],
        "incidents": [{"incident_id": i.incident_id, "title": i.title, "feed_id": i.feed_id,
                       "published": i.published_at.isoformat(), "url": i.payload.get("url"),
                       "classification": i.classification} for i in incidents],
        "preview": await preview(session, alert),
        # What was proposed before a confirmation narrowed it: the page marks what was left out.
        "proposed_preview": (await preview(session, alert.model_copy(update={"scope": Scope()}))
                             if alert.scope != Scope() else None),
        "timers": [{"kind": t.kind, "level": t.level, "due_at": t.due_at.isoformat(),
                    "state": t.state, "error": t.error,
                    "fired_at": t.fired_at.isoformat() if t.fired_at else None} for t in timers],
        "audit": [{"at": a.at.isoformat(), "actor": a.actor, "action": a.action,
                   "reason": a.reason, "left_out": audit.left_out(a.after)} for a in trail],
    }


async def list_alerts(session: AsyncSession, *, status: list[str] | None = None,
                      playbook: str | None = None, community: str | None = None,
                      exercise: bool | None = None, limit: int = 200) -> list[Alert]:
    query = select(AlertRow).order_by(AlertRow.updated_at.desc())
    if status:
        query = query.where(AlertRow.status.in_(status))
    if playbook:
        query = query.where(AlertRow.playbook_id == playbook)
    if exercise is not None:
        query = query.where(AlertRow.exercise.is_(exercise))
    found = [alerts.from_row(r) for r in (await session.execute(query)).scalars()]
    if community:  # communities live in the JSON payload: filter here, portable across engines
        wanted = community.strip().casefold()  # "Muslim" finds "muslim"
        found = [a for a in found if wanted in (c.casefold() for c in a.communities)]
    return found[:limit]


async def statistics(session: AsyncSession) -> dict[str, Any]:
    """Counts for reporting. Exercises are excluded: they are drills, not events."""
    by_status = dict((await session.execute(
        select(AlertRow.status, func.count()).where(AlertRow.exercise.is_(False))
        .group_by(AlertRow.status))).all())
    by_reason = dict((await session.execute(
        select(SuppressedMatch.reason, func.count()).where(SuppressedMatch.exercise.is_(False))
        .group_by(SuppressedMatch.reason))).all())
    return {"alerts": by_status, "suppressed": by_reason}


async def raise_exercise(session: AsyncSession, principal: Principal, *, playbook_id: str,
                         communities: list[str], severity: int, title: str, summary: str = "",
                         now: datetime | None = None) -> Alert:
    """A proposed exercise alert for ``playbook_id``; it flows through confirmation,
    notices and patrols like a real one, marked ``exercise`` everywhere."""
    require(principal, *EXERCISERS, action="raise exercise alerts")
    now = now or utcnow()
    playbooks = await store.current_set(session)
    playbook = playbooks.get(playbook_id)
    if playbook is None:
        raise alerts.AlertError(f"no playbook '{playbook_id}'; stored: "
                                f"{', '.join(p.id for p in playbooks.playbooks) or 'none'}")
    if not communities or not title.strip() or not 0 <= severity <= 4:
        raise alerts.AlertError("an exercise needs communities, a title and a severity 0-4")
    incident_id = stable_id("exi", principal.name, title, now.isoformat())
    cluster_id = stable_id("clu", incident_id)
    session.add(IncidentRow(
        incident_id=incident_id, content_hash=incident_id, feed_id="exercise", cluster_id=cluster_id,
        title=title, published_at=now, received_at=now,
        payload={"title": title, "summary": summary, "exercise": True, "raised_by": principal.name},
        classification={"communities": communities, "severity": severity, "evidence": []}))
    alert = Alert(alert_id=alert_id_for(cluster_id, playbook_id), cluster_id=cluster_id,
                  incident_ids=(incident_id,), playbook_id=playbook_id,
                  playbook_version=playbooks.version_of(playbook_id), status=AlertStatus.PROPOSED,
                  revision=1, severity=severity, communities=tuple(communities),
                  incident_type="exercise", title=title, summary=summary, exercise=True,
                  created_at=now, updated_at=now)
    created = await open_alert(session, alert, playbook, incident_id=incident_id,
                               text=f"{title}\n{summary}", published=now,
                               priority_of=lambda pid: getattr(playbooks.get(pid), "priority", 0),
                               now=now, actor=principal.name)
    if created is None:
        raise alerts.AlertError("the exercise alert matched an active silence or inhibition")
    await audit.record(session, actor=principal.name, action="alert.exercise_raised",
                       subject=created.alert_id, after={"playbook": playbook_id}, key=f"{incident_id}:ex")
    return created
