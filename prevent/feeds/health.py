"""Per-feed health and metrics from ``feed_state``: rows for the console and
`prevent feeds status`, and a ``prometheus_client`` collector of them for ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select

from prevent.feeds.catalog import FeedConfig
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import FeedState, WebSubSubscription

__all__ = ["FeedCollector", "FeedHealth", "feed_health", "prometheus_text"]


@dataclass(frozen=True)
class FeedHealth:
    feed_id: str
    url: str | None  # None: in the database but no longer in the registry
    configured: bool  # enabled in the registry
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    last_error_kind: str | None
    consecutive_errors: int
    errors: int
    next_poll_at: datetime | None
    disabled_reason: str | None
    items_emitted: int
    fetches: int
    not_modified: int
    bytes_fetched: int
    last_duration_ms: float | None
    websub: str | None  # subscription state, if any

    @property
    def not_modified_ratio(self) -> float | None:
        return self.not_modified / self.fetches if self.fetches else None

    @property
    def status(self) -> str:
        if self.disabled_reason:
            return "auto-disabled"
        if not self.configured:
            return "disabled" if self.url else "removed"
        if self.consecutive_errors:
            return "failing"
        return "ok" if self.last_success_at else "new"

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["status"], out["not_modified_ratio"] = self.status, self.not_modified_ratio
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in out.items()}


async def feed_health(db: Database, feeds: Sequence[FeedConfig] = ()) -> list[FeedHealth]:
    """One row per feed in the registry or in the database, sorted by id."""
    async with db.transaction() as session:
        states = {s.feed_id: s for s in (await session.execute(select(FeedState))).scalars()}
        subs = {s.feed_id: s.state for s in (await session.execute(select(WebSubSubscription))).scalars()}
    registry = {f.id: f for f in feeds}
    rows = []
    for feed_id in sorted(set(states) | set(registry)):
        s, f = states.get(feed_id), registry.get(feed_id)
        rows.append(FeedHealth(
            feed_id=feed_id, url=f.url if f else None, configured=bool(f and f.enabled) or not feeds,
            last_success_at=s.last_success_at if s else None,
            last_error_at=s.last_error_at if s else None, last_error=s.last_error if s else None,
            last_error_kind=s.last_error_kind if s else None,
            consecutive_errors=(s.consecutive_errors or 0) if s else 0, errors=(s.errors or 0) if s else 0,
            next_poll_at=s.next_poll_at if s else None,
            disabled_reason=s.disabled_reason if s else None,
            items_emitted=(s.items_emitted or 0) if s else 0, fetches=(s.fetches or 0) if s else 0,
            not_modified=(s.not_modified or 0) if s else 0,
            bytes_fetched=(s.bytes_fetched or 0) if s else 0,
            last_duration_ms=s.last_duration_ms if s else None, websub=subs.get(feed_id)))
    return rows


_METRICS = (
    ("prevent_feed_fetches_total", "counter", "Fetches attempted", lambda r: r.fetches),
    ("prevent_feed_not_modified_total", "counter", "Fetches answered 304 Not Modified",
     lambda r: r.not_modified),
    ("prevent_feed_errors_total", "counter", "Failed fetches", lambda r: r.errors),
    ("prevent_feed_items_emitted_total", "counter", "Incidents published", lambda r: r.items_emitted),
    ("prevent_feed_bytes_total", "counter", "Body bytes fetched (after decompression)",
     lambda r: r.bytes_fetched),
    ("prevent_feed_consecutive_errors", "gauge", "Failures in a row", lambda r: r.consecutive_errors),
    ("prevent_feed_last_fetch_duration_seconds", "gauge", "Duration of the last fetch",
     lambda r: None if r.last_duration_ms is None else r.last_duration_ms / 1000),
    ("prevent_feed_last_success_timestamp_seconds", "gauge", "Unix time of the last success",
     lambda r: r.last_success_at.timestamp() if r.last_success_at else None),
    ("prevent_feed_last_error_timestamp_seconds", "gauge", "Unix time of the last error",
     lambda r: r.last_error_at.timestamp() if r.last_error_at else None),
    ("prevent_feed_not_modified_ratio", "gauge", "Share of fetches answered 304",
     lambda r: r.not_modified_ratio),
    ("prevent_feed_disabled", "gauge", "1 when the feed was auto-disabled",
     lambda r: int(bool(r.disabled_reason))),
)


class FeedCollector(Collector):
    """One series per feed for each metric, from rows read at scrape time."""

    def __init__(self, rows: Iterable[FeedHealth]) -> None:
        self.rows = list(rows)

    def collect(self) -> Iterator[Metric]:
        for name, kind, help_text, value in _METRICS:
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, help_text, labels=["feed_id"])
            for row in self.rows:
                v = value(row)
                if v is not None:
                    family.add_metric([row.feed_id], float(v))
            yield family


def prometheus_text(rows: Iterable[FeedHealth]) -> str:
    """Prometheus text exposition format 0.0.4, one series per feed."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FeedCollector(rows))
    return generate_latest(registry).decode()
