"""The alert lifecycle: every transition is decided here, and only here.

    proposed ──confirm──▶ confirmed ──close──▶ closed
        │ ╲──dismiss──▶ dismissed
        ╰──expire───▶ expired

A cluster update may raise an open alert's severity (recorded). Each change bumps
``revision``; a decision names the revision it was made on (optimistic
concurrency), so of two inspectors deciding at once one wins and the other gets a
:class:`AlertConflict` naming who decided first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.contracts import ALERTS, Alert, AlertStatus, Scope, utcnow
from prevent.platform.storage import outbox
from prevent.platform.storage.tables import AlertRow

S = AlertStatus
TRANSITIONS: dict[str, tuple[set[AlertStatus], AlertStatus]] = {
    "confirm": ({S.PROPOSED}, S.CONFIRMED),
    "dismiss": ({S.PROPOSED}, S.DISMISSED),
    "expire": ({S.PROPOSED}, S.EXPIRED),
    "close": ({S.CONFIRMED}, S.CLOSED),
}
OPEN = {S.PROPOSED, S.CONFIRMED}
DISPOSITIONS = ("not_relevant", "duplicate", "no_local_action", "already_handled")
MAX_LISTED_REPORTS = 100  # reports named in an alert; its cluster holds them all


class PublishArgs(TypedDict):
    """Keyword arguments of ``outbox.stage`` (and ``audit.Staged.stage``) for an alert."""
    key: str
    event_id: str
    subtype: str


class AuditArgs(TypedDict):
    """Keyword arguments of ``audit.record`` (and ``audit.Staged.record``) but the actor."""
    action: str
    subject: str
    before: NotRequired[dict[str, object]]
    after: dict[str, object]
    reason: NotRequired[str]
    key: str


class AlertError(Exception):
    """Base of lifecycle errors; the message is meant for the person who acted."""


class AlertNotFound(AlertError):
    pass


class IllegalTransition(AlertError):
    pass


class AlertConflict(AlertError):
    def __init__(self, alert: Alert) -> None:
        who = alert.decided_by or "another user"
        super().__init__(f"alert {alert.alert_id} was changed by {who} "
                         f"(now {alert.status.value}, revision {alert.revision}); reload and retry")
        self.current = alert


def to_row(alert: Alert) -> AlertRow:
    return AlertRow(alert_id=alert.alert_id, cluster_id=alert.cluster_id,
                    playbook_id=alert.playbook_id, playbook_version=alert.playbook_version,
                    status=alert.status.value, severity=alert.severity, revision=alert.revision,
                    exercise=alert.exercise, created_at=alert.created_at,
                    updated_at=alert.updated_at, decided_by=alert.decided_by,
                    payload=alert.model_dump(mode="json"))


def row_values(alert: Alert) -> dict[str, object]:
    """The ``alerts`` row of ``alert`` as plain values (for multi-row inserts and updates)."""
    return {"alert_id": alert.alert_id, "cluster_id": alert.cluster_id,
            "playbook_id": alert.playbook_id, "playbook_version": alert.playbook_version,
            "status": alert.status.value, "severity": alert.severity, "revision": alert.revision,
            "exercise": alert.exercise, "created_at": alert.created_at,
            "updated_at": alert.updated_at, "decided_by": alert.decided_by,
            "payload": alert.model_dump(mode="json")}


def from_row(row: AlertRow) -> Alert:
    return Alert.model_validate(row.payload)


async def get(session: AsyncSession, alert_id: str) -> Alert:
    row = await session.get(AlertRow, alert_id)
    if row is None:
        raise AlertNotFound(f"no alert {alert_id}")
    return from_row(row)


async def list_alerts(session: AsyncSession, *, status: Sequence[str] = (), limit: int = 200
                      ) -> list[Alert]:
    query = select(AlertRow).order_by(AlertRow.updated_at.desc()).limit(limit)
    if status:
        query = query.where(AlertRow.status.in_(list(status)))
    return [from_row(r) for r in (await session.execute(query)).scalars()]


async def _publish(session: AsyncSession, alert: Alert) -> None:
    await outbox.stage(session, ALERTS, alert, **publish_args(alert))


def created_audit(alert: Alert) -> AuditArgs:
    """The audit entry of a new alert (keyword arguments of ``audit.record``)."""
    return {"action": f"alert.{alert.status.value}", "subject": alert.alert_id,
            "after": _summary(alert), "key": f"{alert.alert_id}:{alert.revision}"}


async def create(session: AsyncSession, alert: Alert, *, actor: str) -> Alert:
    session.add(to_row(alert))
    await audit.record(session, actor=actor, **created_audit(alert))
    await _publish(session, alert)
    return alert


async def _save(session: AsyncSession, before: Alert, after: Alert) -> None:
    """Compare-and-set on revision: the row changes only if nobody changed it meanwhile."""
    row = to_row(after)
    result = await session.execute(
        update(AlertRow).where(AlertRow.alert_id == before.alert_id,
                               AlertRow.revision == before.revision)
        .values(status=row.status, severity=row.severity, revision=row.revision,
                updated_at=row.updated_at, decided_by=row.decided_by, payload=row.payload))
    # An UPDATE's result is a CursorResult, typed by SQLAlchemy as the plain Result (no rowcount).
    updated: int = result.rowcount  # type: ignore[attr-defined]
    if updated != 1:
        current = await session.get(AlertRow, before.alert_id, populate_existing=True)
        raise AlertConflict(from_row(current)) if current else AlertNotFound(before.alert_id)


@dataclass(frozen=True)
class Decision:
    action: str
    actor: str
    expected_revision: int
    note: str | None = None
    scope: Scope | None = None
    disposition: str | None = None


async def decide(session: AsyncSession, alert_id: str, decision: Decision) -> Alert:
    """Apply one transition (confirm, dismiss, expire, close) in the caller's transaction."""
    if decision.action not in TRANSITIONS:
        raise IllegalTransition(f"unknown action '{decision.action}'")
    before = await get(session, alert_id)
    if before.revision != decision.expected_revision:
        raise AlertConflict(before)
    allowed, target = TRANSITIONS[decision.action]
    if before.status not in allowed:
        raise IllegalTransition(f"cannot {decision.action} alert {alert_id}: it is "
                                f"{before.status.value}")
    if decision.action == "dismiss":
        if decision.disposition not in DISPOSITIONS:
            raise AlertError(f"dismissing needs a disposition: one of {', '.join(DISPOSITIONS)}")
        if not (decision.note or "").strip():
            raise AlertError("dismissing needs a note saying why")
    changes: dict[str, object] = {"status": target, "revision": before.revision + 1,
                                  "updated_at": utcnow(), "decided_by": decision.actor,
                                  "note": decision.note}
    if decision.scope is not None:
        if decision.action != "confirm":
            raise AlertError("only a confirmation can narrow the scope")
        changes["scope"] = decision.scope
    after = before.model_copy(update=changes)
    await _save(session, before, after)
    reason = decision.note if not decision.disposition else f"{decision.disposition}: {decision.note}"
    await audit.record(session, actor=decision.actor, action=f"alert.{decision.action}",
                       subject=alert_id, before=_summary(before), after=_summary(after),
                       reason=reason, key=f"{alert_id}:{after.revision}")
    await _publish(session, after)
    return after


def raised(before: Alert, *, severity: int, incident_id: str) -> Alert:
    """``before`` with its severity raised by report ``incident_id`` (the next revision)."""
    return before.model_copy(update={
        "severity": severity, "previous_severity": before.severity,
        "revision": before.revision + 1, "updated_at": utcnow(),
        "incident_ids": _listed(before.incident_ids, incident_id),
    })


def severity_raised_audit(before: Alert, after: Alert, incident_id: str) -> AuditArgs:
    """The audit entry of a severity raise (keyword arguments of ``audit.record``)."""
    return {"action": "alert.severity_raised", "subject": before.alert_id,
            "before": _summary(before), "after": _summary(after),
            "reason": f"report {incident_id} raised severity {before.severity} → {after.severity}",
            "key": f"{before.alert_id}:{after.revision}"}


def publish_args(alert: Alert) -> PublishArgs:
    """How an alert's state is staged in the outbox (keyword arguments of ``outbox.stage``)."""
    return {"key": alert.alert_id, "event_id": f"{alert.alert_id}:{alert.revision}",
            "subtype": alert.status.value}


async def raise_severity(session: AsyncSession, before: Alert, *, severity: int,
                         incident_id: str, actor: str) -> Alert:
    """A later report of the same event is more severe: update the open alert and say so."""
    after = raised(before, severity=severity, incident_id=incident_id)
    await _save(session, before, after)
    await audit.record(session, actor=actor, **severity_raised_audit(before, after, incident_id))
    await _publish(session, after)
    return after


def attached(before: Alert, *incident_ids: str) -> Alert:
    """``before`` remembering more reports, in order (same revision: nothing is published).
    Once the alert lists ``MAX_LISTED_REPORTS``, it is returned unchanged: the cluster
    (``incidents.cluster_id``) holds every report."""
    listed = before.incident_ids
    for incident_id in incident_ids:
        listed = _listed(listed, incident_id)
    if listed is before.incident_ids:
        return before
    return before.model_copy(update={"incident_ids": listed})


def _listed(ids: tuple[str, ...], incident_id: str) -> tuple[str, ...]:
    """The first reports of an alert, bounded: a major event has tens of thousands of
    reports, and an alert event carrying them all would outgrow the topic's message limit."""
    if incident_id in ids or len(ids) >= MAX_LISTED_REPORTS:
        return ids
    return (*ids, incident_id)


async def attach_report(session: AsyncSession, before: Alert, incident_id: str) -> Alert:
    """Another report of the same event at no higher severity: remember it, publish nothing.

    The rules stage does this in memory and writes each alert once per batch
    (``prevent.rules.stage``); this is the one-off form."""
    after = attached(before, incident_id)
    if after is before:
        return before
    await session.execute(update(AlertRow).where(AlertRow.alert_id == before.alert_id)
                          .values(payload=after.model_dump(mode="json")))
    return after


def _summary(alert: Alert) -> dict[str, object]:
    return {"status": alert.status.value, "revision": alert.revision, "severity": alert.severity,
            "playbook": f"{alert.playbook_id}@{alert.playbook_version}",
            "scope": alert.scope.model_dump(mode="json")}
