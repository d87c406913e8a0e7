"""Domain gauges for ``/metrics`` (Prometheus text format): alerts by state and notices by
state, counted in the database so every console replica reports the same numbers."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AlertRow, NoticeRow


class DomainCollector(Collector):
    """``prevent_alerts{state}`` and ``prevent_notices{state}`` from counts read at scrape time."""

    def __init__(self, alerts: dict[str, int], notices: dict[str, int]) -> None:
        self.alerts, self.notices = alerts, notices

    def collect(self) -> Iterator[Metric]:
        for name, help_text, counts in (
                ("prevent_alerts", "Alerts by lifecycle state (exercises included).", self.alerts),
                ("prevent_notices", "Notices by delivery state.", self.notices)):
            family = GaugeMetricFamily(name, help_text, labels=["state"])
            for key, value in sorted(counts.items()):
                family.add_metric([key], value)
            yield family


async def domain_metrics(db: Database) -> str:
    async with db.transaction() as session:
        alerts = dict((await session.execute(
            select(AlertRow.status, func.count()).group_by(AlertRow.status))).all())
        notices = dict((await session.execute(
            select(NoticeRow.state, func.count()).group_by(NoticeRow.state))).all())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DomainCollector(alerts, notices))
    return generate_latest(registry).decode()
