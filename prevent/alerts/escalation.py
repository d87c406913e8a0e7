"""Escalation and expiry of undecided alerts, driven by persisted due times.

When an alert is proposed, one timer per ``response.escalation_minutes`` level and one
expiry timer are written to ``escalation_timers`` in the same transaction. A scanner
(an APScheduler interval job, every few seconds) fires what is due:

* escalate: an email notice to the duty-roster contact of that level, through the
  project's ``EmailChannel``; its id (and ``Message-ID``) is the timer id, so it is
  sent once, and a resend after a crash mid-send carries the same id;
* expire: the proposed alert moves to ``expired`` through ``alerts.decide``.

A timer whose alert was decided meanwhile becomes ``moot``. A scanner claims a timer
with a compare-and-set (``due → firing``), so neither a restart nor a second scanner
process duplicates a notice. APScheduler only provides the tick; it keeps no jobs of
ours in a store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.alerts import states as alerts
from prevent.contracts import Alert, AlertStatus, stable_id, utcnow
from prevent.notices.channel import Channel, OutgoingNotice
from prevent.notices.templates import text_to_html
from prevent.platform.config import get_settings
from prevent.platform.messaging import TransientError
from prevent.platform.storage.db import Database
from prevent.platform.storage.dialect import insert_ignore
from prevent.platform.storage.tables import EscalationTimer, RosterEntry
from prevent.platform.unittime import local_text
from prevent.rules.playbooks.schema import Playbook

log = logging.getLogger("prevent.alerts.escalation")
ESCALATE, EXPIRE = "escalate", "expire"
ACTOR = "escalator"
DEFAULT_TTL = timedelta(hours=72)
# A claim older than this is a scanner that died mid-send: take the timer over.
STALE_CLAIM = timedelta(minutes=2)
STOP_SECONDS = 5.0  # on shutdown, how long a scan under way may take to finish


def timer_id_for(alert_id: str, kind: str, level: int) -> str:
    return stable_id("esc", alert_id, kind, level)


def timer_rows(alert: Alert, playbook: Playbook, *, published: datetime,
               ttl: timedelta = DEFAULT_TTL) -> list[dict[str, object]]:
    """The alert's escalation and expiry timers, as rows (ids derive from alert, kind, level)."""
    max_age = playbook.match.max_age_hours
    expiry = published + timedelta(hours=max_age) if max_age else alert.created_at + ttl
    due = [(ESCALATE, level, alert.created_at + timedelta(minutes=minutes))
           for level, minutes in enumerate(playbook.response.escalation_minutes, start=1)]
    due.append((EXPIRE, 0, max(expiry, alert.created_at)))
    return [{"timer_id": timer_id_for(alert.alert_id, kind, level), "alert_id": alert.alert_id,
             "kind": kind, "level": level, "due_at": at, "state": "due"} for kind, level, at in due]


async def schedule(session: AsyncSession, alert: Alert, playbook: Playbook, *,
                   published: datetime, ttl: timedelta = DEFAULT_TTL) -> None:
    """Write the alert's escalation and expiry due times (idempotent), in one statement."""
    rows = timer_rows(alert, playbook, published=published, ttl=ttl)
    await session.execute(insert_ignore(session, EscalationTimer, ["timer_id"]).values(rows))


@dataclass
class ScanResult:
    escalated: int = 0
    expired: int = 0
    moot: int = 0
    failed: int = 0


class Escalator:
    def __init__(self, db: Database, channel: Channel, *, console_url: str = "",
                 kick: Callable[[], None] | None = None, time_zone: str | None = None) -> None:
        self.db = db
        # Times in the message as the console shows them: the unit's zone (PREVENT_TIME_ZONE).
        self.time_zone = time_zone or get_settings().time_zone
        self.channel = channel
        self.console_url = console_url.rstrip("/")
        self.kick = kick  # the process's outbox relay: publish the events we staged now

    async def scan(self, now: datetime | None = None) -> ScanResult:
        """Fire every timer due at ``now`` (tests pass ``now`` to simulate time)."""
        now = now or utcnow()
        result = ScanResult()
        async with self.db.transaction() as session:
            due = list((await session.execute(
                select(EscalationTimer.timer_id).where(EscalationTimer.due_at <= now, _claimable(now))
                .order_by(EscalationTimer.due_at).limit(200))).scalars())
        for timer_id in due:
            if await self._claim(timer_id, now):
                outcome = await self._fire(timer_id, now)
                setattr(result, outcome, getattr(result, outcome) + 1)
        if due and self.kick:
            self.kick()
        return result

    async def _claim(self, timer_id: str, now: datetime) -> bool:
        """Compare-and-set in one statement: of two scanners only one moves the timer on."""
        async with self.db.transaction() as session:
            claimed = await session.execute(
                update(EscalationTimer).where(EscalationTimer.timer_id == timer_id, _claimable(now))
                .values(state="firing", fired_at=now))
            # An UPDATE's result is a CursorResult, typed by SQLAlchemy as the plain Result (no rowcount).
            updated: int = claimed.rowcount  # type: ignore[attr-defined]
            return updated == 1

    async def _finish(self, timer_id: str, state: str, *, error: str | None = None,
                      entry_id: str | None = None) -> None:
        async with self.db.transaction() as session:
            await session.execute(update(EscalationTimer).where(EscalationTimer.timer_id == timer_id)
                                  .values(state=state, error=error, roster_entry_id=entry_id))

    async def _fire(self, timer_id: str, now: datetime) -> str:
        async with self.db.transaction() as session:
            timer = await session.get(EscalationTimer, timer_id)
            assert timer is not None  # noqa: S101 - narrows the type: claimed just before
            alert = await alerts.get(session, timer.alert_id)
            if alert.status is not AlertStatus.PROPOSED:
                await session.execute(update(EscalationTimer).where(
                    EscalationTimer.timer_id == timer_id).values(state="moot"))
                return "moot"
            if timer.kind == EXPIRE:
                await alerts.decide(session, alert.alert_id, alerts.Decision(
                    action="expire", actor=ACTOR, expected_revision=alert.revision,
                    note="not decided before the incident passed the playbook's max age"))
                await session.execute(update(EscalationTimer).where(
                    EscalationTimer.timer_id == timer_id).values(state="fired"))
                log.info("alert %s expired undecided", alert.alert_id)
                return "expired"
            entry = await _roster_contact(session, timer.level)
            level = timer.level
        if entry is None:
            await self._fail(timer_id, alert, level, "no duty-roster contact to escalate to")
            return "failed"
        try:
            sent = await self.channel.send(self._notice(timer_id, alert, level, entry))
        except TransientError as exc:
            # The mail server is down: give the timer back so the next scan retries.
            async with self.db.transaction() as session:
                await session.execute(update(EscalationTimer).where(EscalationTimer.timer_id == timer_id)
                                      .values(state="due", error=str(exc)))
            log.warning("escalation %s deferred: %s", timer_id, exc)
            return "failed"
        if not sent.ok:
            await self._fail(timer_id, alert, level, sent.error or "send failed", entry.entry_id)
            return "failed"
        async with self.db.transaction() as session:
            await session.execute(update(EscalationTimer).where(EscalationTimer.timer_id == timer_id)
                                  .values(state="fired", roster_entry_id=entry.entry_id, error=None))
            await audit.record(session, actor=ACTOR, action="alert.escalated", subject=alert.alert_id,
                               after={"level": level, "roster_entry": entry.entry_id,
                                      "notice_id": timer_id},
                               reason=f"undecided at level {level} due time", key=timer_id)
        log.info("alert %s escalated to level %d (roster entry %s)", alert.alert_id, level,
                 entry.entry_id)
        return "escalated"

    async def _fail(self, timer_id: str, alert: Alert, level: int, error: str,
                    entry_id: str | None = None) -> None:
        await self._finish(timer_id, "failed", error=error, entry_id=entry_id)
        async with self.db.transaction() as session:
            await audit.record(session, actor=ACTOR, action="alert.escalation_failed",
                               subject=alert.alert_id, after={"level": level}, reason=error,
                               key=f"{timer_id}:failed")
        log.error("escalation of alert %s at level %d failed: %s", alert.alert_id, level, error)

    def _notice(self, timer_id: str, alert: Alert, level: int, entry: RosterEntry) -> OutgoingNotice:
        prefix = "[EXERCISE] " if alert.exercise else ""
        subject = f"{prefix}[ESCALATION L{level}] alert awaiting decision: {alert.title}"
        # The alert's console page (where it is decided), not its JSON.
        link = f"{self.console_url}/alerts/{alert.alert_id}" if self.console_url else alert.alert_id
        proposed = local_text(alert.created_at, self.time_zone)
        text = (f"{entry.name},\n\nAlert {alert.alert_id} (playbook {alert.playbook_id}, severity "
                f"{alert.severity}) was proposed at {proposed} and has not "
                f"been decided. Please confirm or dismiss it now.\n\n{alert.title}\n\n{link}")
        return OutgoingNotice(notice_id=timer_id, address=entry.email, subject=subject, text=text,
                              html=text_to_html(text, "en"), language="en", exercise=alert.exercise,
                              payload={"channel": "email", "notice_id": timer_id,
                                       "alert_id": alert.alert_id, "kind": "escalation"})


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Due, or claimed by a scanner that died mid-send long enough ago."""
    return or_(EscalationTimer.state == "due",
               (EscalationTimer.state == "firing") & (EscalationTimer.fired_at < now - STALE_CLAIM))


async def _roster_contact(session: AsyncSession, level: int) -> RosterEntry | None:
    """The first contact at ``level``; a deeper level than the roster has goes to its top."""
    rows = list((await session.execute(select(RosterEntry).where(RosterEntry.level <= level)
                                       .order_by(RosterEntry.level.desc(), RosterEntry.position)
                                       .limit(1))).scalars())
    return rows[0] if rows else None


class EscalationScheduler:
    """The APScheduler 3 tick that runs :meth:`Escalator.scan` every ``seconds``."""

    def __init__(self, escalator: Escalator, seconds: float = 5.0) -> None:
        self.escalator = escalator
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.scheduler.add_job(self._tick, "interval", seconds=seconds, id="escalation-scan",
                               max_instances=1, coalesce=True, next_run_time=utcnow())
        self._scan: asyncio.Task[object] | None = None  # the tick under way

    async def _tick(self) -> None:
        self._scan = asyncio.current_task()
        try:
            result = await self.escalator.scan()
        except Exception as exc:  # noqa: BLE001 - a failed scan is retried on the next tick
            log.warning("escalation scan failed, will retry: %s", exc)
            return
        finally:
            self._scan = None
        if result.escalated or result.expired or result.failed:
            log.info("escalation scan: %s", result)

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        """No new tick; a scan under way is let finish (``STOP_SECONDS`` at most) rather than
        cancelled mid-transaction, where its connection's rollback would be cancelled too."""
        if not self.scheduler.running:
            return
        self.scheduler.pause()
        scan = self._scan
        if scan is not None:
            await asyncio.wait({scan}, timeout=STOP_SECONDS)
        self.scheduler.shutdown(wait=False)  # cancels the scan only if it is still running
