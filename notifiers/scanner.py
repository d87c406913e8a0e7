"""Time-driven follow-ups, each sent once to the engagement officer:

* acknowledgement follow-up: an alert at or above ``ack_followup_min_severity`` whose
  playbook sets ``response.ack_window_minutes``, with initial notices sent longer ago
  than the window and still not acknowledged, or failed (never reached the partner)
  -> one email listing them;
* stand-down review: an alert's patrol plan ends within ``stand_down_review_hours``
  -> one email asking to extend (``notifiers.patrol.extend``) or end it; a plan extended
  since gets a review of its own before its new end.

Ids are deterministic per alert (``hash(alert, kind)``, a review's with the plan's end) and
the messages are notices,
so the centre notifier's pipeline sends, retries and records them, and a second scan
(or a second replica) finds them already there.

The scanner is also where scheduled retries happen: each scan sends every notice that is
due (a retry whose time came, a send whose claim lapsed because its process died), and the
loop sleeps until the earliest due time when that comes before the next interval, woken
early when a retry is scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from notifiers.centre import OFFICER, CentreNotifier
from prevent.alerts.states import from_row
from prevent.contracts import Alert, AlertStatus, NoticeKind, NoticeState, PatrolAssignment, stable_id, utcnow
from prevent.platform.config import Settings
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AlertRow, NoticeRow, PatrolRow, Site
from prevent.platform.unittime import local_text

log = logging.getLogger("prevent.notifier.scanner")
MIN_SLEEP = 0.05  # seconds between scans at the least, however soon the next retry is due
PAST_DUE_PAUSE = 1.0  # notices past due were handed out by the scan just made
FAILED_SCAN_PAUSE = 2.0  # a scan failed (the database is down?): the next try


def officer_notice_id(alert_id: str, kind: NoticeKind, *parts: object) -> str:
    return stable_id("ntc", alert_id, kind.value, OFFICER, *parts)


class Scanner:
    def __init__(self, settings: Settings, db: Database, notifier: CentreNotifier,
                 playbooks: PlaybookHolder, kick: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.db = db
        self.notifier = notifier
        self.playbooks = playbooks
        self.kick = kick
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sleeping_until: datetime | None = None
        notifier.on_scheduled = self._scheduled

    def _scheduled(self, due: datetime) -> None:
        """A retry was scheduled: wake the loop if it sleeps past the due time."""
        if self._sleeping_until is None or due < self._sleeping_until:
            self._wake.set()

    async def scan_once(self, now: datetime | None = None, *, wait: bool = True) -> list[str]:
        """Queue what is due, and send every notice due; returns the ids of the messages
        queued by this scan. ``wait=False`` (the loop) hands the sends to background tasks,
        so one slow receiver never delays the next scan."""
        now = now or utcnow()
        queued = await self.ack_followups(now) + await self.stand_down_reviews(now)
        due = list(dict.fromkeys(queued + await self.notifier.due(now)))
        if wait:
            await self.notifier.deliver_many(due, now)
        else:
            self.notifier.dispatch(due)
        if queued:
            self.kick()
        return queued

    async def ack_followups(self, now: datetime) -> list[str]:
        queued = []
        async with self.db.transaction() as session:
            rows = (await session.execute(select(AlertRow).where(
                AlertRow.status == AlertStatus.CONFIRMED.value,
                AlertRow.severity >= self.settings.ack_followup_min_severity))).scalars().all()
        for row in rows:
            alert = from_row(row)
            playbook = await self.playbooks.version(self.db, alert.playbook_id, alert.playbook_version)
            window = playbook.response.ack_window_minutes
            if window is None:
                continue
            async with self.db.transaction() as session:
                initial = (NoticeRow.alert_id == alert.alert_id, NoticeRow.kind == NoticeKind.INITIAL.value,
                           NoticeRow.acknowledged_at.is_(None))
                late = (await session.execute(select(NoticeRow).where(
                    *initial, NoticeRow.state.in_([NoticeState.SENT.value, NoticeState.DELIVERED.value]),
                    NoticeRow.sent_at <= now - timedelta(minutes=window)))).scalars().all()
                # Never reached the partner (refused, undelivered): as urgent to follow up.
                failed = (await session.execute(select(NoticeRow).where(
                    *initial, NoticeRow.state == NoticeState.FAILED.value,
                    NoticeRow.created_at <= now - timedelta(minutes=window)))).scalars().all()
                if not late and not failed:
                    continue
                sites = {s.site_id: s.name for s in (await session.execute(select(Site).where(
                    Site.site_id.in_({n.site_id for n in [*late, *failed]})))).scalars()}
                tz = self.settings.time_zone  # times in the unit's zone, as on the console
                lines = [f"- {sites.get(n.site_id, n.site_id)}: {n.channel} notice sent "
                         f"{local_text(n.sent_at, tz)} ({n.notice_id})" for n in late]
                lines += [f"- {sites.get(n.site_id, n.site_id)}: {n.channel} notice could not be "
                          f"delivered ({n.notice_id}; the reason is on the notices page)" for n in failed]
                notice_id = officer_notice_id(alert.alert_id, NoticeKind.ACK_FOLLOWUP)
                if await self.notifier.queue_officer_message(
                        session, notice_id=notice_id, alert=alert, kind=NoticeKind.ACK_FOLLOWUP,
                        site_id="", subject=f"Not acknowledged after {window} min: {alert.title}",
                        body=_ack_body(alert, window, lines, self.settings.public_base_url)):
                    queued.append(notice_id)
        return queued

    async def stand_down_reviews(self, now: datetime) -> list[str]:
        horizon = now + timedelta(hours=self.settings.stand_down_review_hours)
        due: dict[str, list[PatrolAssignment]] = {}
        async with self.db.transaction() as session:
            for row in (await session.execute(select(PatrolRow).where(
                    PatrolRow.status == "assigned"))).scalars():
                plan = PatrolAssignment.model_validate(row.payload)
                if now - timedelta(hours=1) < plan.ends_at <= horizon:
                    due.setdefault(plan.alert_id, []).append(plan)
        queued = []
        for alert_id, plans in due.items():
            async with self.db.transaction() as session:
                alert_row = await session.get(AlertRow, alert_id)
                if alert_row is None or alert_row.status != AlertStatus.CONFIRMED.value:
                    continue
                alert = from_row(alert_row)
                ends = min(p.ends_at for p in plans)
                # One review per end of the plan: an extended plan gets its own review.
                notice_id = officer_notice_id(alert_id, NoticeKind.STAND_DOWN_REVIEW, ends.isoformat())
                if await self.notifier.queue_officer_message(
                        session, notice_id=notice_id, alert=alert, kind=NoticeKind.STAND_DOWN_REVIEW,
                        site_id="", subject=f"Stand-down review due by "
                                            f"{local_text(ends, self.settings.time_zone)}: {alert.title}",
                        body=_review_body(alert, plans, self.settings.public_base_url,
                                          self.settings.time_zone)):
                    queued.append(notice_id)
        return queued

    # ------------------------------------------------------------------ running

    async def _sleep_seconds(self, failed: bool) -> float:
        """Until the next interval, or the earliest scheduled retry or lapsing claim if sooner.
        Notices already past due were just handed out (or wait for a free slot): the next look
        at them is a second away, not a busy loop. After a failed scan, a few seconds."""
        seconds = min(self.settings.scanner_interval_seconds, FAILED_SCAN_PAUSE if failed else 1e9)
        try:
            due = await self.notifier.next_due()
        except Exception as exc:  # noqa: BLE001 - the database may be down: try again soon
            log.warning("cannot read the next due time: %s", exc)
            due, seconds = None, min(seconds, FAILED_SCAN_PAUSE)
        if due is not None:
            wait = (due - utcnow()).total_seconds()
            seconds = min(seconds, max(MIN_SLEEP, wait) if wait > 0 else PAST_DUE_PAUSE)
        self._sleeping_until = utcnow() + timedelta(seconds=seconds)
        return seconds

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            failed = False
            try:
                await self.scan_once(wait=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed scan is retried at the next tick
                log.warning("follow-up scan failed, will retry: %s", exc)
                failed = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), await self._sleep_seconds(failed))
            self._sleeping_until = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="notifier-scanner")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.notifier.aclose()  # the sends under way: a few seconds to finish


def _ack_body(alert: Alert, window: int, lines: list[str], base_url: str) -> str:
    return (f"These partner notices about \"{alert.title}\" (alert {alert.alert_id}, severity "
            f"{alert.severity}) were not acknowledged within {window} minutes, or could not be "
            f"delivered:\n\n"
            + "\n".join(lines)
            + f"\n\nPlease contact these partners directly.\nConsole: {base_url.rstrip('/')}/\n")


def _review_body(alert: Alert, plans: list[PatrolAssignment], base_url: str, tz: str) -> str:
    lines = [f"- {p.site_name} ({p.zone}): every {p.every_minutes} min until "
             f"{local_text(p.ends_at, tz)}" for p in plans]
    return (f"The directed patrol plan for \"{alert.title}\" (alert {alert.alert_id}) is about to "
            f"end:\n\n" + "\n".join(lines)
            + "\n\nPlease review it: extend the plan on the alert's page, or let it end / close the alert."
            + f"\nAlert: {base_url.rstrip('/')}/alerts/{alert.alert_id}\n")
