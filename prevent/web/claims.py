"""What the queue needs to say what needs deciding now: escalation due times, claims.

A claim ("I'm on it") is an audit entry (``alert.claimed``; ``alert.claim_released`` ends
it), so every console replica sees the same claims without a table of their own. A claim
holds while the alert is still proposed, until released or until ``claim_minutes`` pass;
a decision ends it by itself (only proposed alerts show claims).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.alerts import states as alerts
from prevent.contracts import Alert, utcnow
from prevent.platform.storage.tables import AlertRow, AuditRow, EscalationTimer, IncidentRow
from prevent.users import Principal, Role, require

URGENT = 3  # severity at or above which a queue row is marked urgent
CLAIMED, RELEASED = "alert.claimed", "alert.claim_released"


class ClaimError(ValueError):
    pass


def span(delta: timedelta) -> str:
    """A short duration for people: "4 min", "2 h 05 min", "3 d 2 h"."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


async def escalations(session: AsyncSession, alert_ids: list[str]
                      ) -> dict[str, tuple[datetime | None, int]]:
    """Per alert: the next escalation still due, and how many escalation levels fired."""
    if not alert_ids:
        return {}
    out: dict[str, tuple[datetime | None, int]] = {}
    rows = (await session.execute(select(EscalationTimer).where(
        EscalationTimer.alert_id.in_(alert_ids), EscalationTimer.kind == "escalate")
        .order_by(EscalationTimer.due_at))).scalars()
    for t in rows:
        next_due, fired = out.get(t.alert_id, (None, 0))
        if t.state in ("due", "firing") and next_due is None:
            next_due = t.due_at
        if t.state == "fired":
            fired += 1
        out[t.alert_id] = (next_due, fired)
    return out


async def urgent_reports(session: AsyncSession, alerts_shown: list[Alert]) -> set[str]:
    """The alerts among ``alerts_shown`` that a partner centre reported as urgent (the box
    ticked on the acknowledgement page): urgent in the queue whatever their severity."""
    by_cluster = {a.cluster_id: a.alert_id for a in alerts_shown}
    if not by_cluster:
        return set()
    rows = (await session.execute(select(IncidentRow.cluster_id, IncidentRow.payload).where(
        IncidentRow.cluster_id.in_(list(by_cluster)), IncidentRow.feed_id.like("partner:%")))).all()
    return {by_cluster[cluster] for cluster, payload in rows
            if "urgent" in ((payload or {}).get("categories") or ())}


async def active_claims(session: AsyncSession, alert_ids: list[str], now: datetime, minutes: int
                        ) -> dict[str, dict[str, object]]:
    """alert id -> {"by", "at", "until"} for claims still holding."""
    if not alert_ids:
        return {}
    since = now - timedelta(minutes=minutes)
    latest: dict[str, AuditRow] = {}
    for row in (await session.execute(select(AuditRow).where(
            AuditRow.subject.in_(alert_ids), AuditRow.action.in_([CLAIMED, RELEASED]),
            AuditRow.at >= since).order_by(AuditRow.at, AuditRow.audit_id))).scalars():
        latest[row.subject] = row
    return {aid: {"by": row.actor, "at": row.at, "until": row.at + timedelta(minutes=minutes)}
            for aid, row in latest.items() if row.action == CLAIMED}


async def undecided_counts(session: AsyncSession) -> dict[str, int]:
    rows = (await session.execute(select(AlertRow.exercise, func.count()).where(
        AlertRow.status == "proposed").group_by(AlertRow.exercise))).all()
    counts = {bool(ex): int(n) for ex, n in rows}
    return {"alerts": counts.get(False, 0), "exercises": counts.get(True, 0)}


async def claim(session: AsyncSession, principal: Principal, alert_id: str, *, release: bool,
                minutes: int) -> None:
    """Claim (or release one's own claim on) a proposed alert, as a duty inspector."""
    require(principal, Role.DUTY_INSPECTOR, action="claim alerts")
    alert = await alerts.get(session, alert_id)
    if alert.status.value != "proposed":
        raise ClaimError(f"the alert is already {alert.status.value}: there is nothing to claim")
    now = utcnow()
    held = (await active_claims(session, [alert_id], now, minutes)).get(alert_id)
    if release:
        if held is None or held["by"] != principal.name:
            raise ClaimError("you hold no claim on this alert")
        action = RELEASED
    else:
        if held is not None and held["by"] != principal.name:
            raise ClaimError(f"{held['by']} is already on it")
        action = CLAIMED
    await audit.record(session, actor=principal.name, action=action, subject=alert_id,
                       key=f"{alert_id}:{action}:{principal.name}:{now.isoformat()}")
