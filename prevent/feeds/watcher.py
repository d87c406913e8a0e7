"""The feed watcher: one APScheduler job per feed; fetch, parse, dedupe, publish, schedule.

* Nothing is marked seen before Kafka acknowledged its publish, so a broker outage or a
  crash re-publishes (absorbed downstream by the deterministic incident id) rather than
  losing an entry; a failed publish also keeps the old ETag/Last-Modified, so the next
  poll gets the full body again instead of a 304 that would hide the unpublished entries.
* One feed's failure is recorded on that feed (kind, message, consecutive count,
  backoff, auto-disable) and never reaches the others: every poll is its own job, the
  network is bounded per host and overall (:class:`~prevent.feeds.fetch.Fetcher`), and
  parsing runs in a thread.
* When to poll next is :mod:`prevent.feeds.schedule`; the job's next run is moved after
  a poll whenever it differs from the plain interval APScheduler already moved it by.
* Feed state (validators, counters, backoff) lives in memory: loaded once, changed by
  polls without touching the database, and written in batches (every
  ``STATE_FLUSH_SECONDS``, after ``STATE_FLUSH_BATCH`` changes, at the end of
  :meth:`FeedWatcher.poll` / :meth:`FeedWatcher.poll_all`, and at once on an auto-disable).
  An unchanged feed (304) costs one request and no database round trip. A crash loses at
  most the last few seconds of state: counters, a backoff step, or newer validators (the
  next poll then gets a 200 instead of a 304, and dedupe publishes nothing again). Seen
  entries are not batched: they are still written before the poll ends, after Kafka
  acknowledged their publish, and validators only ever move forward in memory after that.
* On a memory-only broker (the embedded Tansu: ``replay_unstored``) an acknowledged record
  dies with the broker when the process crashes, possibly before the rules stage stored
  it. There each seen entry also keeps the incident as published until that version is
  stored, and :meth:`FeedWatcher.start` publishes again every entry whose incident was
  never stored, before the first poll (the rules stage is idempotent by incident id and
  content hash). Stored entries' copies are dropped at start and by the hourly prune.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import ColumnElement, delete, exists, insert, select, update

from prevent.contracts import FeedKind, GlobalIncident, utcnow
from prevent.feeds import schedule
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.fetch import Fetcher, FetchError, FetchResult
from prevent.feeds.normalize import incidents_from_bytes
from prevent.feeds.parse import FeedParseError
from prevent.feeds.threat import ThreatLevelError, change_incident, extract_level
from prevent.feeds.websub import WebSub, record_push, take_pushed
from prevent.platform.config import Settings
from prevent.platform.retrying import RetryCallState, retrying
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import (
    FeedState,
    IncidentRow,
    SeenEntry,
    ThreatLevelState,
    WebSubSubscription,
)

log = logging.getLogger("prevent.watcher")
Publish = Callable[[GlobalIncident], Awaitable[None]]
SEEN_CHUNK = 500  # ids per IN (...) query: well under every driver's parameter limit
# Kinds that will not fix themselves: disable at once rather than after N tries.
PERMANENT_STATUS = frozenset({410})
STATE_FLUSH_SECONDS = 2.0  # feed state changes reach the database at most this late...
STATE_FLUSH_BATCH = 500  # ...or as soon as this many feeds changed
REPLAY_RETRY_SECONDS = 30.0  # a replay at start that could not publish is tried again this late
STOP_SECONDS = 10.0  # on shutdown, how long the polls under way may take to finish
_STATE_COLUMNS = tuple(c.key for c in FeedState.__table__.columns)


class PublishFailed(Exception):
    """Kafka did not acknowledge a publish after every retry (the broker is down)."""


@dataclass(frozen=True)
class PollOutcome:
    feed_id: str
    published: int = 0
    not_modified: bool = False
    error: str | None = None
    next_in: float | None = None  # seconds; None when the feed is (now) disabled
    disabled: bool = False


class FeedWatcher:
    def __init__(self, feeds: Sequence[FeedConfig], db: Database,
                 fetcher: Fetcher | httpx.AsyncClient, publish: Publish, *,
                 settings: Settings | None = None, websub: WebSub | None = None,
                 publish_attempts: int = 6, publish_backoff: float = 0.5,
                 reload: Callable[[], list[FeedConfig]] | None = None,
                 rng: random.Random | None = None, startup_spread: float = 5.0,
                 replay_unstored: bool = False) -> None:
        self.settings = settings or Settings()
        self.feeds = {f.id: f for f in feeds if f.enabled}
        self.db = db
        self.fetcher = fetcher if isinstance(fetcher, Fetcher) else Fetcher.from_settings(
            fetcher, self.settings)
        self.publish = publish
        self.websub = websub
        self.bounds = schedule.Bounds.from_settings(self.settings)
        self.publish_attempts = publish_attempts
        self.publish_backoff = publish_backoff
        self.reload = reload
        self.rng = rng or random.Random()  # noqa: S311 - jitter and spread, not security
        self.startup_spread = startup_spread
        # The broker keeps records in memory only (Tansu): keep each published incident with
        # its seen entry until it is stored, and publish the unstored ones again at start.
        self.replay_unstored = replay_unstored
        self.retention = timedelta(days=self.settings.feed_seen_retention_days)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self._jobs: set[asyncio.Task[Any]] = set()  # scheduled jobs running now: aclose() waits
        self._closing = False
        # Poll and WebSub push of one feed never interleave their dedupe and mark-seen.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # In-memory feed state (this watcher is its only writer; `prevent feeds enable` only
        # clears an auto-disable, picked up by sync()), written back in batches by flush().
        self._cache: dict[str, FeedState] = {}
        self._persisted: set[str] = set()  # ids with a feed_state row
        self._dirty: set[str] = set()  # ids changed since the last flush
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self._websub_feeds: set[str] | None = None  # feeds with a subscription row (None: unknown)

    # ------------------------------------------------------------------ scheduling

    async def start(self) -> None:
        await self._load_states()
        replay_failed = False
        if self.replay_unstored:
            replay_failed = not await self._replay_quietly()
        now = utcnow()
        for feed in self.feeds.values():
            state = self._cache.get(feed.id)
            if state is not None and state.disabled_reason:
                log.warning("feed_id=%s is disabled: %s (`prevent feeds enable %s`)",
                            feed.id, state.disabled_reason, feed.id)
                continue
            self._add_job(feed, self._first_run(feed, state, now))
        self.scheduler.add_job(self._job(self.prune_seen), "interval", hours=1, id="__prune_seen__",
                               coalesce=True, max_instances=1, next_run_time=now)
        self.scheduler.add_job(self._job(self.sync), "interval", seconds=60, id="__sync__",
                               coalesce=True, max_instances=1)
        self.scheduler.add_job(self._job(self._flush_quietly), "interval", seconds=STATE_FLUSH_SECONDS,
                               id="__flush_state__", coalesce=True, max_instances=1)
        if self.websub is not None:
            self.scheduler.add_job(self._job(self.websub.renew_due), "interval", minutes=5,
                                   id="__websub_renew__", coalesce=True, max_instances=1)
            self.scheduler.add_job(self._job(self.poll_pushed), "interval", id="__websub_pushed__",
                                   seconds=self.settings.websub_push_scan_seconds,
                                   coalesce=True, max_instances=1)
        if replay_failed:
            self._retry_replay()
        self.scheduler.start()

    def _retry_replay(self) -> None:
        self.scheduler.add_job(self._job(self._replay_job), "date", id="__replay_unstored__",
                               replace_existing=True,
                               run_date=utcnow() + timedelta(seconds=REPLAY_RETRY_SECONDS))

    async def _replay_job(self) -> None:
        if not await self._replay_quietly():
            self._retry_replay()

    def _first_run(self, feed: FeedConfig, state: FeedState | None, now: datetime) -> datetime:
        # A restart honours a backoff or Retry-After still running; first polls of many
        # feeds are spread over a few seconds instead of one burst.
        due = state.next_poll_at if state is not None and state.next_poll_at else now
        spread = self.rng.uniform(0, min(self.startup_spread, feed.interval_seconds / 10))
        return max(due, now) + timedelta(seconds=spread)

    def _add_job(self, feed: FeedConfig, first: datetime) -> None:
        self.scheduler.add_job(
            self._job(self._scheduled_poll), "interval", seconds=feed.interval_seconds, args=[feed.id],
            id=feed.id, coalesce=True, max_instances=1, jitter=min(30, feed.interval_seconds // 10),
            next_run_time=first, misfire_grace_time=None, replace_existing=True,
        )

    def _reschedule(self, feed_id: str, seconds: float | None) -> None:
        if not self.scheduler.running:
            return
        try:
            if seconds is None:
                self.scheduler.remove_job(feed_id)
            else:
                when = utcnow() + timedelta(seconds=schedule.jittered(seconds, rng=self.rng))
                self.scheduler.modify_job(feed_id, next_run_time=when)
        except JobLookupError:
            pass  # removed meanwhile (disabled, or the registry changed)

    def stop(self) -> None:
        """Stop polling. State changes not yet flushed are lost: prefer :meth:`aclose`."""
        self._closing = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def aclose(self) -> None:
        """Stop polling, let the polls under way finish (``STOP_SECONDS`` at most), and write
        the feed state changed since the last flush."""
        self._closing = True
        if self.scheduler.running:
            self.scheduler.pause()  # no new job; APScheduler's shutdown cancels those running
            if self._jobs:
                await asyncio.wait(set(self._jobs), timeout=STOP_SECONDS)
        self.stop()
        if self._jobs:  # cancelled just now: let them end (each with its INFO line)
            await asyncio.wait(set(self._jobs), timeout=STOP_SECONDS)
        await self._flush_quietly()

    def _job(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """``func`` as a scheduled job: :meth:`aclose` waits for it while it runs, and a job
        the shutdown still cancels (APScheduler's ``shutdown`` cancels the jobs running: one
        slower than ``STOP_SECONDS``) ends with an INFO line instead of an ERROR traceback.
        Nothing is lost: the next start polls the feed again, and what a poll marked seen is
        published again until it is stored."""

        @functools.wraps(func)
        async def job(*args: Any) -> Any:
            task = asyncio.current_task()
            assert task is not None  # noqa: S101 - APScheduler runs a coroutine job in a task
            self._jobs.add(task)
            try:
                return await func(*args)
            except asyncio.CancelledError:
                if not self._closing:
                    raise
                log.info("%s%s cancelled by the shutdown; the next start repeats it",
                         func.__name__, f" {args[0]}" if args else "")
                return None
            finally:
                self._jobs.discard(task)

        return job

    async def sync(self) -> None:
        """Pick up registry edits and feeds re-enabled with `prevent feeds enable`."""
        if self.reload is not None:
            try:
                fresh = {f.id: f for f in self.reload() if f.enabled}
            except Exception as exc:  # noqa: BLE001 - keep the feeds we have
                log.error("feeds registry not reloaded: %s", exc)
                fresh = self.feeds
            for gone in set(self.feeds) - set(fresh):
                self._reschedule(gone, None)
            changed = {i for i in fresh if i in self.feeds and fresh[i] != self.feeds[i]}
            for feed_id in changed:
                self._reschedule(feed_id, None)
            self.feeds = fresh
        await self._flush_quietly()
        async with self._flush_lock:  # no write in flight: the rows read are what we flushed
            stored = await self._states(self.feeds)
            self._websub_feeds = await self._subscribed_feeds() if self.websub is not None else None
        for feed_id, row in stored.items():
            mine = self._cache.get(feed_id)
            if mine is None:  # a feed added to the registry
                self._cache[feed_id] = row
            elif mine.disabled_reason and not row.disabled_reason and feed_id not in self._dirty:
                self._cache[feed_id] = row  # `prevent feeds enable` cleared the auto-disable
            self._persisted.add(feed_id)
        self._loaded = True
        now = utcnow()
        for feed in self.feeds.values():
            state = self._cache.get(feed.id)
            if self.scheduler.get_job(feed.id) is None and not (state and state.disabled_reason):
                self._add_job(feed, self._first_run(feed, state, now))

    # ------------------------------------------------------------------ polling

    async def poll_all(self, feeds: Iterable[str] | None = None) -> list[PollOutcome]:
        """Poll the given (default: every) feed once, concurrently within the fetch bounds;
        the feed state is in the database when this returns (unless the database failed)."""
        ids = list(feeds) if feeds is not None else list(self.feeds)
        outcomes = list(await asyncio.gather(*(self._poll_once(i) for i in ids)))
        await self._flush_quietly()
        return outcomes

    async def poll(self, feed_id: str) -> PollOutcome:
        """Poll one feed once. Never raises: one failing feed must not disturb the others.
        The feed state is in the database when this returns (unless the database failed)."""
        outcome = await self._poll_once(feed_id)
        await self._flush_quietly()
        return outcome

    async def poll_pushed(self) -> list[PollOutcome]:
        """Poll now the feeds whose pushes a console in another process received."""
        try:
            pushed = [f for f in await take_pushed(self.db) if f in self.feeds]
        except Exception as exc:  # noqa: BLE001 - the next scan, or the regular poll, catches up
            log.warning("pushed feeds not read: %s", exc)
            return []
        outcomes = list(await asyncio.gather(*(self._poll_once(f) for f in pushed)))
        if outcomes:
            await self._flush_quietly()
        return outcomes

    async def _scheduled_poll(self, feed_id: str) -> None:
        """The APScheduler job: state is written by the next batch, not by this poll."""
        await self._poll_once(feed_id, scheduled=True)

    async def _poll_once(self, feed_id: str, *, scheduled: bool = False) -> PollOutcome:
        feed = self.feeds.get(feed_id)
        if feed is None:
            return PollOutcome(feed_id, error="unknown or disabled feed")
        try:
            outcome = await self._poll(feed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded per feed, never raised
            log.exception("feed_id=%s unexpected error", feed.id)
            outcome = await self._failed(feed, type(exc).__name__, str(exc) or type(exc).__name__)
        # APScheduler moved a job that just ran on by its interval (with the same jitter):
        # moving it again to the same time would only cost a job store update and a wakeup.
        if not (scheduled and outcome.next_in == feed.interval_seconds):
            self._reschedule(feed.id, outcome.next_in)
        return outcome

    async def _poll(self, feed: FeedConfig) -> PollOutcome:
        state = await self._state(feed.id)
        if state.disabled_reason:
            return PollOutcome(feed.id, error=state.disabled_reason, disabled=True)
        try:
            result = await self.fetcher.fetch(feed.url, etag=state.etag, last_modified=state.last_modified)
        except FetchError as exc:
            return await self._failed(feed, exc.kind, str(exc), retry_after=exc.retry_after,
                                      status=exc.status)
        if result.not_modified:  # costs one request; the state change is written in a batch
            return await self._succeeded(feed, result, emitted=0)
        try:
            async with self._locks[feed.id]:
                if feed.kind is FeedKind.THREAT_LEVEL:
                    emitted, ttl, hub = await self._threat_level(feed, result), None, None
                else:
                    emitted, ttl, hub = await self._entries(feed, result)
        except (FeedParseError, ThreatLevelError) as exc:
            return await self._failed(feed, "parse", str(exc), status=result.status)
        except PublishFailed as exc:
            return await self._publish_failed(feed, exc)
        if hub and self.websub is not None:
            await self._ensure_websub(feed, hub, result)
        return await self._succeeded(feed, result, emitted=emitted, ttl_minutes=ttl)

    async def _entries(self, feed: FeedConfig, result: FetchResult
                       ) -> tuple[int, int | None, str | None]:
        incidents, parsed, problems = await asyncio.to_thread(
            incidents_from_bytes, result.body, feed, headers=result.headers)
        for problem in problems:
            log.info("feed_id=%s %s", feed.id, problem)
        emitted = await self.ingest(feed, incidents)
        return emitted, parsed.ttl_minutes, parsed.hub_url

    async def _ensure_websub(self, feed: FeedConfig, hub: str, result: FetchResult) -> None:
        assert self.websub is not None  # noqa: S101 - narrows the type: only called with WebSub on
        if self._websub_feeds is not None:
            self._websub_feeds.add(feed.id)  # ensure() may create its subscription row
        try:
            await self.websub.ensure(feed, hub, feed.url if feed.url.startswith("http") else result.url)
        except Exception as exc:  # noqa: BLE001 - polling goes on without push
            log.warning("feed_id=%s websub: %s", feed.id, exc)

    # ------------------------------------------------------------------ dedupe + publish

    async def ingest(self, feed: FeedConfig, incidents: Sequence[GlobalIncident]) -> int:
        """Publish what is new or changed, then mark it seen; the one path for polls and pushes.

        Returns how many were published. Raises PublishFailed after marking seen what
        was acknowledged before the failure.
        """
        if not incidents:
            return 0
        now = utcnow()
        known = await self._known([i.incident_id for i in incidents])
        fresh = [i for i in incidents if i.incident_id not in known
                 or known[i.incident_id][0] != i.content_hash]
        # Entries still in the feed stay remembered: their seen_at is refreshed before
        # the retention window could prune them.
        refresh = [i.incident_id for i in incidents if i.incident_id in known
                   and known[i.incident_id][0] == i.content_hash
                   and known[i.incident_id][1] < now - self.retention / 2]
        acked: list[GlobalIncident] = []
        try:
            for incident in fresh:
                await self._publish_with_retry(incident)
                acked.append(incident)
        finally:
            if acked or refresh:
                await self._mark_seen(acked, set(known), refresh, now)
        if acked:
            log.info("feed_id=%s published %d new or updated incidents", feed.id, len(acked))
        return len(acked)

    async def _publish_with_retry(self, incident: GlobalIncident) -> None:
        def log_retry(state: RetryCallState) -> None:
            log.warning("incident_id=%s publish failed (attempt %d): %s", incident.incident_id,
                        state.attempt_number, state.outcome.exception() if state.outcome else "?")

        try:
            # Any publish failure is retried: the broker decides nothing about our incidents.
            async for attempt in retrying(retry_on=lambda _exc: True, attempts=self.publish_attempts,
                                          base=self.publish_backoff, cap=30.0,
                                          before_sleep=log_retry, rng=self.rng):
                with attempt:
                    await self.publish(incident)
        except Exception as exc:  # every attempt failed
            raise PublishFailed(f"publish of {incident.incident_id} failed {self.publish_attempts} "
                                f"times: {type(exc).__name__}: {exc}") from exc

    async def _known(self, ids: list[str]) -> dict[str, tuple[str, datetime]]:
        known: dict[str, tuple[str, datetime]] = {}
        async with self.db.transaction() as session:
            for start in range(0, len(ids), SEEN_CHUNK):
                chunk = ids[start:start + SEEN_CHUNK]
                rows = await session.execute(
                    select(SeenEntry.incident_id, SeenEntry.content_hash, SeenEntry.seen_at)
                    .where(SeenEntry.incident_id.in_(chunk)))
                known.update({r.incident_id: (r.content_hash, r.seen_at) for r in rows})
        return known

    async def _mark_seen(self, acked: list[GlobalIncident], known: set[str], refresh: list[str],
                         now: datetime) -> None:
        def kept(i: GlobalIncident) -> str | None:
            return i.model_dump_json() if self.replay_unstored else None

        async with self.db.transaction() as session:
            session.add_all(SeenEntry(incident_id=i.incident_id, feed_id=i.feed_id,
                                      content_hash=i.content_hash, published_at=i.published,
                                      seen_at=now, payload=kept(i))
                            for i in acked if i.incident_id not in known)
            for i in acked:
                if i.incident_id in known:
                    await session.execute(update(SeenEntry).where(SeenEntry.incident_id == i.incident_id)
                                          .values(content_hash=i.content_hash, seen_at=now,
                                                  payload=kept(i)))
            for start in range(0, len(refresh), SEEN_CHUNK):
                await session.execute(update(SeenEntry).values(seen_at=now)
                                      .where(SeenEntry.incident_id.in_(refresh[start:start + SEEN_CHUNK])))

    async def prune_seen(self, *, now: datetime | None = None) -> int:
        """Forget entries not seen within the retention window (and the copies of incidents
        the rules stage has stored since); returns how many entries were forgotten."""
        cutoff = (now or utcnow()) - self.retention
        async with self.db.transaction() as session:
            result = await session.execute(delete(SeenEntry).where(SeenEntry.seen_at < cutoff))
        await self.drop_stored_copies()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ memory-only broker

    @staticmethod
    def _stored() -> ColumnElement[bool]:
        """The seen entry's version of its incident is stored by the rules stage."""
        return exists().where(IncidentRow.incident_id == SeenEntry.incident_id,
                              IncidentRow.content_hash == SeenEntry.content_hash)

    async def drop_stored_copies(self) -> int:
        """Clear the kept copy of every incident the rules stage has stored; returns how many."""
        async with self.db.transaction() as session:
            result = await session.execute(
                update(SeenEntry).where(SeenEntry.payload.is_not(None), self._stored())
                .values(payload=None).execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def replay(self) -> int:
        """Publish again every seen entry whose incident (that version) was never stored: it
        was acknowledged by a memory-only broker that died before the rules stage stored it.
        Returns how many; raises PublishFailed when the broker does not take them (the copies
        stay, for the next try). Repeats are harmless: the rules stage is idempotent by
        incident id and content hash."""
        await self.drop_stored_copies()
        async with self.db.transaction() as session:
            rows = (await session.execute(
                select(SeenEntry.incident_id, SeenEntry.payload)
                .where(SeenEntry.payload.is_not(None), ~self._stored())
                .order_by(SeenEntry.seen_at, SeenEntry.incident_id))).all()
        for row in rows:
            try:
                incident = GlobalIncident.model_validate_json(row.payload)
            except ValueError as exc:  # written by an older version: nothing to publish
                log.error("incident_id=%s kept copy unreadable, not published again: %s",
                          row.incident_id, exc)
                continue
            await self._publish_with_retry(incident)
        if rows:
            log.warning("published again %d incidents the broker had acknowledged but the rules "
                        "stage never stored (the memory-only broker's records died with the last "
                        "run)", len(rows))
        return len(rows)

    async def _replay_quietly(self) -> bool:
        try:
            await self.replay()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - polling starts anyway; retried
            log.error("incidents not yet stored not published again (retried in %.0f s): %s",
                      REPLAY_RETRY_SECONDS, exc)
            return False

    async def receive_push(self, feed_id: str, body: bytes, headers: Mapping[str, str]) -> int:
        """A WebSub content push (signature already checked): same parse, dedupe, publish."""
        feed = self.feeds.get(feed_id)
        if feed is None:
            raise LookupError(f"feed {feed_id} is not watched (removed or disabled)")
        incidents, _parsed, problems = await asyncio.to_thread(
            incidents_from_bytes, body, feed, headers=headers)
        for problem in problems:
            log.info("feed_id=%s push: %s", feed_id, problem)
        async with self._locks[feed_id]:
            emitted = await self.ingest(feed, incidents)
        await record_push(self.db, feed_id)
        if emitted:
            state = await self._state(feed_id)
            state.items_emitted = (state.items_emitted or 0) + emitted
            if not state.disabled_reason:
                self._touch(feed_id)
            else:  # not batched: a later flush must not undo a `prevent feeds enable`
                async with self.db.transaction() as session:
                    row = await session.get(FeedState, feed_id) or _new_state(feed_id)
                    row.items_emitted = (row.items_emitted or 0) + emitted
                    await session.merge(row)
        return emitted

    # ------------------------------------------------------------------ threat level

    async def _threat_level(self, feed: FeedConfig, result: FetchResult) -> int:
        level = await asyncio.to_thread(extract_level, result.body, feed, result.headers)
        now = utcnow()
        async with self.db.transaction() as session:
            row = await session.get(ThreatLevelState, feed.id)
            if row is None:  # first observation: recorded, not an event (see threat.py)
                session.add(ThreatLevelState(feed_id=feed.id, level=level, observed_at=now,
                                             checked_at=now))
                log.info("feed_id=%s threat level is %s (first observation)", feed.id, level)
                return 0
            if row.level == level:
                row.checked_at = now
                return 0
            previous, since = row.level, row.observed_at
        incident = change_incident(feed, previous, level, previous_since=since, now=now)
        emitted = await self.ingest(feed, [incident])  # raises PublishFailed: state unchanged
        async with self.db.transaction() as session:
            row = await session.get(ThreatLevelState, feed.id)
            assert row is not None  # noqa: S101 - narrows the type: the row exists
            row.level, row.observed_at, row.checked_at = level, now, now
        log.warning("feed_id=%s threat level changed from %s to %s", feed.id, previous, level)
        return emitted

    # ------------------------------------------------------------------ feed state

    async def _states(self, feeds: Iterable[str]) -> dict[str, FeedState]:
        ids = list(feeds)
        rows: list[FeedState] = []
        async with self.db.transaction() as session:
            for start in range(0, len(ids), SEEN_CHUNK):
                rows += (await session.execute(
                    select(FeedState).where(FeedState.feed_id.in_(ids[start:start + SEEN_CHUNK])))
                ).scalars().all()
        return {r.feed_id: r for r in rows}

    async def _load_states(self) -> None:
        """Every watched feed's state, read once (one query) before the first poll."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            stored = await self._states(self.feeds)
            for feed_id, row in stored.items():
                self._cache.setdefault(feed_id, row)
                self._persisted.add(feed_id)
            self._loaded = True

    async def _state(self, feed_id: str) -> FeedState:
        await self._load_states()
        state = self._cache.get(feed_id)
        if state is None:
            state = self._cache[feed_id] = _new_state(feed_id)
        return state

    def _touch(self, feed_id: str) -> None:
        self._dirty.add(feed_id)
        if len(self._dirty) >= STATE_FLUSH_BATCH and (self._flush_task is None or self._flush_task.done()):
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_quietly())

    async def flush(self) -> None:
        """Write the feed states changed since the last flush, in one transaction.

        Raises when the database fails; the changes stay pending for the next flush.
        """
        async with self._flush_lock:
            if not self._dirty:
                return
            ids, self._dirty = self._dirty, set()
            rows = [{k: getattr(self._cache[i], k) for k in _STATE_COLUMNS} for i in ids if i in self._cache]
            new = [r for r in rows if r["feed_id"] not in self._persisted]
            old = [r for r in rows if r["feed_id"] in self._persisted]
            try:
                async with self.db.transaction() as session:
                    if old:  # one executemany UPDATE ... WHERE feed_id = ?
                        await session.execute(update(FeedState), old)
                    if new:
                        await session.execute(insert(FeedState), new)
            except BaseException:
                self._dirty |= ids
                raise
            self._persisted.update(r["feed_id"] for r in new)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - retried by the next flush
            log.warning("feed state not written (%d feeds pending, retried): %s", len(self._dirty), exc)

    async def _subscribed_feeds(self) -> set[str]:
        async with self.db.transaction() as session:
            return set((await session.execute(select(WebSubSubscription.feed_id))).scalars())

    async def _push_is_primary(self, feed_id: str) -> bool:
        """An active WebSub subscription; only feeds with a subscription row cost a query."""
        if self.websub is None:
            return False
        if self._websub_feeds is None:
            self._websub_feeds = await self._subscribed_feeds()
        return feed_id in self._websub_feeds and await self.websub.is_active(feed_id)

    async def _succeeded(self, feed: FeedConfig, result: FetchResult, *, emitted: int,
                         ttl_minutes: int | None = None) -> PollOutcome:
        interval = float(feed.interval_seconds)
        if await self._push_is_primary(feed.id):
            interval *= self.settings.websub_poll_factor  # push is primary; polling the fallback
        next_in = schedule.next_interval(interval, self.bounds, ttl_minutes=ttl_minutes,
                                         max_age=result.max_age, retry_after=result.retry_after)
        now = utcnow()
        state = await self._state(feed.id)
        state.etag, state.last_modified = result.etag, result.last_modified
        state.last_success_at = now
        state.last_status = result.status
        state.consecutive_errors = 0
        state.items_emitted = (state.items_emitted or 0) + emitted
        state.fetches = (state.fetches or 0) + 1
        state.not_modified = (state.not_modified or 0) + int(result.not_modified)
        state.bytes_fetched = (state.bytes_fetched or 0) + len(result.body)
        state.last_duration_ms = result.duration_ms
        state.next_poll_at = now + timedelta(seconds=next_in)
        self._touch(feed.id)
        return PollOutcome(feed.id, published=emitted, not_modified=result.not_modified,
                           next_in=next_in)

    async def _failed(self, feed: FeedConfig, kind: str, message: str, *,
                      retry_after: float | None = None, status: int | None = None) -> PollOutcome:
        log.warning("feed_id=%s %s: %s", feed.id, kind, message)
        now = utcnow()
        state = await self._state(feed.id)
        errors = (state.consecutive_errors or 0) + 1
        state.consecutive_errors = errors
        state.errors = (state.errors or 0) + 1
        state.fetches = (state.fetches or 0) + 1
        state.last_error_at, state.last_error_kind = now, kind
        state.last_error = f"{kind}: {message}"[:2000]
        state.last_status = status
        next_in: float | None = schedule.backoff_seconds(
            feed.interval_seconds, errors, self.bounds, retry_after=retry_after)
        if status in PERMANENT_STATUS or schedule.should_disable(errors, self.bounds):
            why = "the feed is gone (HTTP 410)" if status in PERMANENT_STATUS else \
                f"{errors} consecutive errors"
            state.disabled_reason = f"auto-disabled: {why}; last error {kind}: {message}"[:2000]
            state.disabled_at, next_in = now, None
            log.error("feed_id=%s %s", feed.id, state.disabled_reason)
        state.next_poll_at = now + timedelta(seconds=next_in) if next_in is not None else None
        self._touch(feed.id)
        if next_in is None:  # an operator-visible decision: written at once, not batched
            await self._flush_quietly()
        return PollOutcome(feed.id, error=f"{kind}: {message}", next_in=next_in,
                           disabled=next_in is None)

    async def _publish_failed(self, feed: FeedConfig, exc: PublishFailed) -> PollOutcome:
        """The broker, not the feed, failed: recorded, not counted towards auto-disable,
        validators unchanged, and the feed is polled again soon."""
        log.error("feed_id=%s %s", feed.id, exc)
        next_in = self.bounds.min_seconds
        state = await self._state(feed.id)
        state.last_error_at, state.last_error_kind = utcnow(), "publish"
        state.last_error = f"publish: {exc}"[:2000]
        state.next_poll_at = utcnow() + timedelta(seconds=next_in)
        self._touch(feed.id)
        return PollOutcome(feed.id, error=f"publish: {exc}", next_in=next_in)


def _new_state(feed_id: str) -> FeedState:
    return FeedState(feed_id=feed_id, consecutive_errors=0, items_emitted=0, fetches=0,
                     not_modified=0, bytes_fetched=0, errors=0)
