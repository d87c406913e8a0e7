"""The audit trail: append-only rows plus a ``prevent.audit.v1`` event for each.

:class:`Staged` is the batch form used by the rules stage: audit entries, their events
and the other rows of a batch are kept in memory and written together, one multi-row
insert per table, at the end of the batch (still in the caller's transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import AUDIT, AuditEvent, Contract, Topic, stable_id, utcnow
from prevent.platform.storage import outbox
from prevent.platform.storage.bulk import insert_rows
from prevent.platform.storage.tables import AuditRow, OutboxRow


def _values(*, actor: str, action: str, subject: str, before: dict[str, Any] | None,
            after: dict[str, Any] | None, reason: str | None, key: str | None) -> dict[str, Any]:
    """An entry's column values (a plain dict: the batch form stages thousands of them)."""
    at = utcnow()
    audit_id = stable_id("aud", key) if key else stable_id("aud", actor, action, subject, at.isoformat())
    return {"audit_id": audit_id, "at": at, "actor": actor, "action": action, "subject": subject,
            "before": before, "after": after, "reason": reason}


async def record(session: AsyncSession, *, actor: str, action: str, subject: str,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 reason: str | None = None, key: str | None = None) -> AuditEvent:
    """Append one entry in the caller's transaction.

    ``key`` makes the entry idempotent (a redelivered message records nothing new);
    without it, every call is a new entry.
    """
    row = AuditRow(**_values(actor=actor, action=action, subject=subject, before=before, after=after,
                             reason=reason, key=key))
    if key and (existing := await session.get(AuditRow, row.audit_id)) is not None:
        return _event(existing)
    session.add(row)
    event = _event(row)
    await outbox.stage(session, AUDIT, event, key=subject, event_id=row.audit_id)
    return event


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(audit_id=row.audit_id, actor=row.actor, action=row.action,
                      subject=row.subject, before=row.before, after=row.after,
                      reason=row.reason, at=row.at)


SCOPE_PARTS = (("excluded_sites", "sites"), ("excluded_channels", "channels"),
               ("excluded_patrol_sites", "patrols"))


def left_out(after: dict[str, Any] | None) -> str:
    """What a confirmation left out ("sites left out: a, b; channels left out: sms"), from the
    scope in its entry's ``after``; empty when it narrowed nothing."""
    scope = (after or {}).get("scope") or {}
    return "; ".join(f"{label} left out: {', '.join(scope[key])}"
                     for key, label in SCOPE_PARTS if scope.get(key))


async def entries(session: AsyncSession, *, subject: str | None = None,
                  since: datetime | None = None, limit: int = 500) -> list[AuditRow]:
    query = select(AuditRow).order_by(AuditRow.at, AuditRow.audit_id).limit(limit)
    if subject:
        query = query.where(AuditRow.subject == subject)
    if since:
        query = query.where(AuditRow.at >= since)
    return list((await session.execute(query)).scalars())


class Staged:
    """Rows to insert at the end of a batch, in the order they were staged.

    A table staged with ``skip_existing`` is inserted with ON CONFLICT DO NOTHING on its
    primary key (or ``conflict`` columns): what ``record`` and ``outbox.stage`` do one row
    at a time. Within the batch a repeated key keeps its first row. Outbox rows keep their
    order, so events of one alert are published in the order they happened.
    """

    def __init__(self) -> None:
        self._tables: dict[str, tuple[Table, tuple[str, ...] | None, dict[Any, dict[str, Any]]]] = {}

    def add(self, table: Table, values: dict[str, Any], *, key: Any,
            skip_existing: tuple[str, ...] | None = None) -> bool:
        """Stage one row; False if a row with this key is already staged."""
        entry = self._tables.setdefault(table.name, (table, skip_existing, {}))
        if key in entry[2]:
            return False
        entry[2][key] = values
        return True

    def replace(self, table: Table, values: dict[str, Any], *, key: Any) -> None:
        """Change a row staged earlier in the batch (its latest state is what is written)."""
        self._tables[table.name][2][key] = values

    def record(self, *, actor: str, action: str, subject: str,
               before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
               reason: str | None = None, key: str | None = None) -> AuditEvent:
        """``record`` for a batch: an entry whose key exists already records nothing."""
        values = _values(actor=actor, action=action, subject=subject, before=before, after=after,
                         reason=reason, key=key)
        event = AuditEvent(**values)
        if self.add(AuditRow.__table__, values, key=event.audit_id, skip_existing=("audit_id",)):
            self.stage(AUDIT, event, key=subject, event_id=event.audit_id)
        return event

    def stage(self, topic: Topic, event: Contract, *, key: str, event_id: str,
              subtype: str | None = None, headers: dict[str, str] | None = None) -> None:
        """``outbox.stage`` for a batch: a repeated event id is a no-op."""
        self.add(OutboxRow.__table__, {
            "event_id": event_id, "topic": topic.name, "key": key, "subtype": subtype,
            "headers": headers, "payload": event.model_dump_json(), "created_at": utcnow(),
        }, key=event_id, skip_existing=("event_id",))

    async def flush(self, session: AsyncSession) -> None:
        """Write everything staged: one executemany (multi-row insert) per table."""
        tables, self._tables = self._tables, {}
        for table, conflict, rows in tables.values():
            await insert_rows(session, table, list(rows.values()), skip_existing=conflict)
