"""The audit trail: append-only rows plus a ``prevent.audit.v1`` event for each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import AUDIT, AuditEvent, stable_id, utcnow
from prevent.storage import outbox
from prevent.storage.tables import AuditRow


async def record(session: AsyncSession, *, actor: str, action: str, subject: str,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 reason: str | None = None, key: str | None = None) -> AuditEvent:
    """Append one entry in the caller's transaction.

    ``key`` makes the entry idempotent (a redelivered message records nothing new);
    without it, every call is a new entry.
    """
    at = utcnow()
    audit_id = stable_id("aud", key) if key else stable_id("aud", actor, action, subject, at.isoformat())
    if key and await session.get(AuditRow, audit_id) is not None:
        return _event(await session.get(AuditRow, audit_id))  # type: ignore[arg-type]
    row = AuditRow(audit_id=audit_id, at=at, actor=actor, action=action, subject=subject,
                   before=before, after=after, reason=reason)
    session.add(row)
    event = _event(row)
    await outbox.stage(session, AUDIT, event, key=subject, event_id=audit_id)
    return event


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(audit_id=row.audit_id, actor=row.actor, action=row.action,
                      subject=row.subject, before=row.before, after=row.after,
                      reason=row.reason, at=row.at)


async def entries(session: AsyncSession, *, subject: str | None = None,
                  since: datetime | None = None, limit: int = 500) -> list[AuditRow]:
    query = select(AuditRow).order_by(AuditRow.at, AuditRow.audit_id).limit(limit)
    if subject:
        query = query.where(AuditRow.subject == subject)
    if since:
        query = query.where(AuditRow.at >= since)
    return list((await session.execute(query)).scalars())
