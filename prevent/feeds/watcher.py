"""The feed watcher: one APScheduler job per feed; fetch, parse, dedupe, publish.

Nothing is marked seen before Kafka acknowledged its publish, so a broker outage
or a crash re-publishes (absorbed downstream by the deterministic incident id)
rather than losing an entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select

from prevent.contracts import GlobalIncident, utcnow
from prevent.feeds.fetch import FetchError, fetch
from prevent.feeds.normalize import incidents_from_bytes
from prevent.feeds.parse import FeedParseError
from prevent.feeds.registry import FeedConfig
from prevent.storage.db import Database
from prevent.storage.tables import FeedState, SeenEntry

log = logging.getLogger("prevent.watcher")
Publish = Callable[[GlobalIncident], Awaitable[None]]


class FeedWatcher:
    def __init__(self, feeds: Sequence[FeedConfig], db: Database, client: httpx.AsyncClient,
                 publish: Publish) -> None:
        self.feeds = [f for f in feeds if f.enabled]
        self.db = db
        self.client = client
        self.publish = publish
        self.scheduler = AsyncIOScheduler(timezone="UTC")

    def start(self) -> None:
        for feed in self.feeds:
            self.scheduler.add_job(
                self.poll, "interval", seconds=feed.interval_seconds, args=[feed], id=feed.id,
                coalesce=True, max_instances=1, jitter=min(30, feed.interval_seconds // 10),
                next_run_time=utcnow(),
            )
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def poll(self, feed: FeedConfig) -> int:
        """Poll one feed once; returns how many incidents were published. Never raises:
        one failing feed must not disturb the others."""
        try:
            return await self._poll(feed)
        except Exception as exc:  # noqa: BLE001 - recorded per feed
            log.warning("feed %s: %s", feed.id, exc)
            await self._record_error(feed, exc)
            return 0

    async def _poll(self, feed: FeedConfig) -> int:
        async with self.db.transaction() as session:
            state = await session.get(FeedState, feed.id) or FeedState(feed_id=feed.id)
            etag, last_modified = state.etag, state.last_modified
        result = await fetch(self.client, feed.url, etag=etag, last_modified=last_modified)
        if result.not_modified:
            await self._record_success(feed, result.etag, result.last_modified, 0, 0,
                                       result.duration_ms, not_modified=True)
            return 0
        incidents, parsed, problems = await asyncio.to_thread(
            incidents_from_bytes, result.body, feed, headers=result.headers)
        for problem in problems:
            log.info("feed %s: %s", feed.id, problem)
        fresh = await self._unseen(incidents)
        for incident in fresh:
            await self.publish(incident)
            await self._mark_seen(incident)
        await self._record_success(feed, result.etag, result.last_modified, len(fresh),
                                   len(result.body), result.duration_ms)
        if fresh:
            log.info("feed %s: published %d new or updated incidents", feed.id, len(fresh))
        return len(fresh)

    async def _unseen(self, incidents: list[GlobalIncident]) -> list[GlobalIncident]:
        if not incidents:
            return []
        async with self.db.transaction() as session:
            rows = (await session.execute(select(SeenEntry.incident_id, SeenEntry.content_hash)
                    .where(SeenEntry.incident_id.in_([i.incident_id for i in incidents])))).all()
        known = dict(rows)  # type: ignore[arg-type]
        return [i for i in incidents if known.get(i.incident_id) != i.content_hash]

    async def _mark_seen(self, incident: GlobalIncident) -> None:
        async with self.db.transaction() as session:
            await session.merge(SeenEntry(
                incident_id=incident.incident_id, feed_id=incident.feed_id,
                content_hash=incident.content_hash, published_at=incident.published,
                seen_at=utcnow()))

    async def _record_success(self, feed: FeedConfig, etag: str | None, last_modified: str | None,
                              emitted: int, size: int, duration_ms: float,
                              not_modified: bool = False) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            state = await session.get(FeedState, feed.id) or FeedState(
                feed_id=feed.id, consecutive_errors=0, items_emitted=0, fetches=0,
                not_modified=0, bytes_fetched=0)
            state.etag, state.last_modified = etag, last_modified
            state.last_success_at = now
            state.consecutive_errors = 0
            state.items_emitted = (state.items_emitted or 0) + emitted
            state.fetches = (state.fetches or 0) + 1
            state.not_modified = (state.not_modified or 0) + int(not_modified)
            state.bytes_fetched = (state.bytes_fetched or 0) + size
            state.last_duration_ms = duration_ms
            state.next_poll_at = now + timedelta(seconds=feed.interval_seconds)
            await session.merge(state)

    async def _record_error(self, feed: FeedConfig, exc: Exception) -> None:
        kind = exc.kind if isinstance(exc, FetchError) else (
            "parse" if isinstance(exc, FeedParseError) else type(exc).__name__)
        try:
            async with self.db.transaction() as session:
                state = await session.get(FeedState, feed.id) or FeedState(
                    feed_id=feed.id, consecutive_errors=0, items_emitted=0, fetches=0,
                    not_modified=0, bytes_fetched=0)
                state.last_error_at = utcnow()
                state.last_error = f"{kind}: {exc}"[:2000]
                state.consecutive_errors = (state.consecutive_errors or 0) + 1
                state.fetches = (state.fetches or 0) + 1
                await session.merge(state)
        except Exception as db_exc:  # noqa: BLE001 - the database may be the thing that failed
            log.warning("feed %s: could not record error: %s", feed.id, db_exc)
