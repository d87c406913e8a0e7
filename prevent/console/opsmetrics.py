"""Domain gauges for ``/metrics`` (Prometheus text format): alerts by state and notices by
state, counted in the database so every console replica reports the same numbers."""

from __future__ import annotations

from sqlalchemy import func, select

from prevent.storage.db import Database
from prevent.storage.tables import AlertRow, NoticeRow


def _gauge(name: str, help_text: str, label: str, counts: dict[str, int]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f'{name}{{{label}="{key}"}} {value}' for key, value in sorted(counts.items())]
    return lines


async def domain_metrics(db: Database) -> str:
    async with db.transaction() as session:
        alerts = dict((await session.execute(
            select(AlertRow.status, func.count()).group_by(AlertRow.status))).all())
        notices = dict((await session.execute(
            select(NoticeRow.state, func.count()).group_by(NoticeRow.state))).all())
    lines = _gauge("prevent_alerts", "Alerts by lifecycle state (exercises included).", "state", alerts)
    lines += _gauge("prevent_notices", "Notices by delivery state.", "state", notices)
    return "\n".join(lines) + "\n"
