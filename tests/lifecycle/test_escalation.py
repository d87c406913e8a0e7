"""Escalation and expiry timers: persisted, fired once, survive a restart."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from lifecycle.support import INSPECTOR, FakeChannel, make_alert, minutes, open_alert
from prevent import audit
from prevent.alerts import lifecycle
from prevent.alerts import states as alerts
from prevent.alerts.escalation import EscalationScheduler, Escalator
from prevent.contracts import AlertStatus, utcnow
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import EscalationTimer


async def _restarted(db: Database) -> Database:
    """A new process's engine on the same database (the same schema on PostgreSQL)."""
    if db.dialect == "sqlite":
        return Database(db.url)
    async with db.engine.connect() as conn:
        schema = (await conn.exec_driver_sql("SELECT current_schema()")).scalar()
    return Database(db.url, schema=schema)


async def test_escalation_fires_once_per_level_across_a_restart(seeded) -> None:
    t0 = utcnow()
    alert = await open_alert(seeded, make_alert(at=t0, exercise=True))
    channel = FakeChannel()
    first = Escalator(seeded, channel)
    assert (await first.scan(t0 + minutes(5))).escalated == 0  # before the 15-minute level
    await first.db.dispose()
    # "restart": a new engine and escalator with nothing in memory; the due times are in the table
    restarted = await _restarted(seeded)
    try:
        second = Escalator(restarted, channel)
        assert (await second.scan(t0 + minutes(16))).escalated == 1
        assert (await second.scan(t0 + minutes(17))).escalated == 0
        assert (await Escalator(restarted, channel).scan(t0 + minutes(20))).escalated == 0
        assert (await second.scan(t0 + minutes(31))).escalated == 1
        assert (await second.scan(t0 + minutes(45))).escalated == 0
    finally:
        await restarted.dispose()
    assert [n.address for n in channel.sent] == ["duty-inspector@example.org",
                                                 "superintendent@example.org"]
    assert len({n.notice_id for n in channel.sent}) == 2
    assert channel.sent[0].subject.startswith("[EXERCISE] [ESCALATION L1]")
    async with seeded.transaction() as session:
        trail = [r for r in await audit.entries(session, subject=alert.alert_id)
                 if r.action == "alert.escalated"]
    assert [r.after["level"] for r in trail] == [1, 2]
    assert [r.after["roster_entry"] for r in trail] == ["roster-duty-1", "roster-super-1"]


async def test_two_scanners_at_once_send_one_notice(seeded) -> None:
    import asyncio

    t0 = utcnow()
    await open_alert(seeded, make_alert(at=t0))
    channel = FakeChannel()
    results = await asyncio.gather(Escalator(seeded, channel).scan(t0 + minutes(16)),
                                   Escalator(seeded, channel).scan(t0 + minutes(16)))
    assert sum(r.escalated for r in results) == 1 and len(channel.sent) == 1


async def test_a_decided_alert_is_not_escalated(seeded) -> None:
    t0 = utcnow()
    alert = await open_alert(seeded, make_alert(at=t0))
    await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="confirm", expected_revision=1)
    channel = FakeChannel()
    result = await Escalator(seeded, channel).scan(t0 + minutes(31))
    assert (result.escalated, result.moot, channel.sent) == (0, 2, [])


async def test_an_undecided_alert_expires_at_the_playbook_max_age(seeded) -> None:
    t0 = utcnow()
    published = t0 - timedelta(hours=70)  # the playbook's max age is 72 h
    alert = await open_alert(seeded, make_alert(at=t0), published=published)
    escalator = Escalator(seeded, FakeChannel())
    assert (await escalator.scan(t0 + timedelta(hours=1))).expired == 0
    assert (await escalator.scan(t0 + timedelta(hours=2, minutes=1))).expired == 1
    assert (await escalator.scan(t0 + timedelta(hours=3))).expired == 0
    async with seeded.transaction() as session:
        after = await alerts.get(session, alert.alert_id)
        timers = (await session.execute(select(EscalationTimer.kind, EscalationTimer.state).where(
            EscalationTimer.alert_id == alert.alert_id))).all()
        trail = [r.action for r in await audit.entries(session, subject=alert.alert_id)]
    assert after.status is AlertStatus.EXPIRED and after.decided_by == "escalator"
    assert sorted(timers) == [("escalate", "fired"), ("escalate", "fired"), ("expire", "fired")]
    assert "alert.expire" in trail


async def test_no_roster_contact_is_recorded_as_a_failure(seeded) -> None:
    from prevent.partners import registry

    t0 = utcnow()
    alert = await open_alert(seeded, make_alert(at=t0))
    async with seeded.transaction() as session:
        await registry.replace_roster(session, [])
    result = await Escalator(seeded, FakeChannel()).scan(t0 + minutes(16))
    assert result.failed == 1
    async with seeded.transaction() as session:
        entry = (await audit.entries(session, subject=alert.alert_id))[-1]
    assert entry.action == "alert.escalation_failed" and "no duty-roster contact" in entry.reason


async def test_stopping_the_scheduler_lets_a_scan_under_way_finish() -> None:
    """A scan is not cancelled mid-transaction at shutdown (its cancelled rollback logged an
    error); the scheduler starts no scan after ``stop``."""
    started, release = asyncio.Event(), asyncio.Event()
    scans: list[str] = []

    class SlowEscalator:
        async def scan(self) -> object:
            scans.append("started")
            started.set()
            await release.wait()
            scans.append("finished")
            return type("Result", (), {"escalated": 0, "expired": 0, "failed": 0})()

    scheduler = EscalationScheduler(SlowEscalator(), seconds=0.05)  # type: ignore[arg-type]
    scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(scheduler.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    await asyncio.sleep(0.2)
    assert scans == ["started", "finished"]
    assert not scheduler.scheduler.running
