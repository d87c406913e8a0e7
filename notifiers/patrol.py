"""The patrol notifier: one assignment per targeted site on confirmation, cancelled on close;
a duty inspector may extend an alert's patrols (the stand-down review's "extend the plan").

Assignment ids are deterministic (alert, site): a redelivered event re-publishes
the same assignment instead of creating a second one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.alerts.audience import PatrolTarget, resolve_audience
from prevent.contracts import (
    PATROLS,
    Alert,
    AlertStatus,
    PatrolAssignment,
    PatrolStatus,
    assignment_id_for,
    utcnow,
)
from prevent.platform.storage import outbox
from prevent.platform.storage.tables import AlertRow, PatrolRow
from prevent.rules.playbooks.schema import Playbook
from prevent.users import Principal, Role, require

MAX_EXTENSION_HOURS = 7 * 24
EXTENDERS = (Role.DUTY_INSPECTOR,)


class PatrolError(ValueError):
    """A patrol change that cannot be made; the message says why."""


class PatrolConflict(PatrolError):
    """The plan changed since the person acting saw it (for instance a second click)."""


def assignment_for(alert: Alert, target: PatrolTarget, starts_at: datetime) -> PatrolAssignment:
    plan = target.plan
    instructions = plan.instructions
    if alert.exercise:
        instructions = f"EXERCISE — {instructions}"
    return PatrolAssignment(
        assignment_id=assignment_id_for(alert.alert_id, target.site_id), alert_id=alert.alert_id,
        site_id=target.site_id, site_name=target.site_name, zone=target.zone_id,
        status=PatrolStatus.ASSIGNED, starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=plan.duration_hours), every_minutes=plan.every_minutes,
        priority=plan.priority, instructions=instructions, floor_plan_ref=target.floor_plan_ref,
        lat=target.lat, lon=target.lon, exercise=alert.exercise, at=utcnow(),
    )


async def handle_alert(session: AsyncSession, alert: Alert, playbook: Playbook) -> int:
    """Assign or cancel patrols for this alert state, in the caller's transaction."""
    if alert.status is AlertStatus.CONFIRMED:
        return await _assign(session, alert, playbook)
    if alert.status is AlertStatus.CLOSED:
        return await _cancel(session, alert)
    return 0


async def _assign(session: AsyncSession, alert: Alert, playbook: Playbook) -> int:
    plan = await resolve_audience(session, alert, playbook)
    created = 0
    for target in plan.patrols:
        assignment_id = assignment_id_for(alert.alert_id, target.site_id)
        if await session.get(PatrolRow, assignment_id) is not None:
            continue  # already assigned: a severity update does not duplicate patrols
        assignment = assignment_for(alert, target, alert.updated_at)
        session.add(PatrolRow(assignment_id=assignment_id, alert_id=alert.alert_id,
                              site_id=target.site_id, zone_id=target.zone_id,
                              status=assignment.status.value,
                              payload=assignment.model_dump(mode="json"),
                              created_at=assignment.at, updated_at=assignment.at))
        await outbox.stage(session, PATROLS, assignment, key=assignment_id,
                           event_id=f"{assignment_id}:assigned", subtype="assigned")
        created += 1
    return created


async def _cancel(session: AsyncSession, alert: Alert) -> int:
    rows = (await session.execute(select(PatrolRow).where(
        PatrolRow.alert_id == alert.alert_id,
        PatrolRow.status == PatrolStatus.ASSIGNED.value))).scalars().all()
    for row in rows:
        cancelled = PatrolAssignment.model_validate(row.payload).model_copy(
            update={"status": PatrolStatus.CANCELLED, "at": utcnow()})
        row.status = cancelled.status.value
        row.payload = cancelled.model_dump(mode="json")
        row.updated_at = cancelled.at
        await outbox.stage(session, PATROLS, cancelled, key=row.assignment_id,
                           event_id=f"{row.assignment_id}:cancelled", subtype="cancelled")
    return len(rows)


async def extend(session: AsyncSession, principal: Principal, alert_id: str, *, hours: int,
                 note: str, seen_until: datetime | None = None,
                 now: datetime | None = None) -> list[PatrolAssignment]:
    """Keep a confirmed alert's directed patrols going ``hours`` longer: each assigned patrol's
    end moves that much later (counted from now if it has already passed), and a new
    stand-down review follows before the new end. ``seen_until`` is the plan's end as the
    person saw it: if it moved meanwhile (a second click), nothing is extended twice.
    Audited with ``note``."""
    require(principal, *EXTENDERS, action="extend patrols")
    if not 1 <= hours <= MAX_EXTENSION_HOURS:
        raise PatrolError(f"extend by 1 to {MAX_EXTENSION_HOURS} hours")
    if not note.strip():
        raise PatrolError("say why the patrols are extended")
    alert = await session.get(AlertRow, alert_id)
    if alert is None or alert.status != AlertStatus.CONFIRMED.value:
        raise PatrolError(f"alert {alert_id} is not confirmed: only a confirmed alert's patrols run")
    rows = (await session.execute(select(PatrolRow).where(
        PatrolRow.alert_id == alert_id, PatrolRow.status == PatrolStatus.ASSIGNED.value)
        .order_by(PatrolRow.assignment_id))).scalars().all()
    if not rows:
        raise PatrolError(f"alert {alert_id} has no assigned patrols")
    plans = [PatrolAssignment.model_validate(row.payload) for row in rows]
    until = max(p.ends_at for p in plans)
    if seen_until is not None and until != seen_until:
        raise PatrolConflict(f"the plan now ends at {until:%Y-%m-%d %H:%M} UTC: reload and check")
    now = now or utcnow()
    extended = []
    for row, plan in zip(rows, plans, strict=True):
        after = plan.model_copy(update={"ends_at": max(plan.ends_at, now) + timedelta(hours=hours),
                                        "at": now})
        row.payload, row.updated_at = after.model_dump(mode="json"), now
        await outbox.stage(session, PATROLS, after, key=row.assignment_id,
                           event_id=f"{row.assignment_id}:extended:{after.ends_at.isoformat()}",
                           subtype="extended")
        extended.append(after)
    await audit.record(session, actor=principal.name, action="patrol.extended", subject=alert_id,
                       before={"until": until.isoformat()},
                       after={"hours": hours, "until": max(p.ends_at for p in extended).isoformat(),
                              "patrols": len(extended)}, reason=note.strip())
    return extended
