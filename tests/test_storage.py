"""Storage on SQLite and PostgreSQL: migrations, UTC timestamps, the transactional outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from prevent.contracts import AUDIT, AuditEvent
from prevent.platform.storage import outbox
from prevent.platform.storage.tables import AuditRow, OutboxRow


def event(n: int) -> AuditEvent:
    return AuditEvent(audit_id=f"a{n}", actor="t", action="x", subject="s",
                      at=datetime(2026, 1, 1, tzinfo=UTC))


async def test_migrations_are_idempotent(db) -> None:
    await db.upgrade()
    assert await db.ping()


async def test_the_migrations_build_exactly_the_models_schema(db) -> None:
    """A column or table added to prevent/platform/storage/tables.py without its migration (or the
    other way round) fails here, not on a production database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from prevent.platform.storage.tables import Base

    def differences(conn):
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_timestamps_come_back_aware_utc(db) -> None:
    local = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    async with db.transaction() as session:
        session.add(AuditRow(audit_id="t1", at=local, actor="a", action="b", subject="c"))
    async with db.transaction() as session:
        row = await session.get(AuditRow, "t1")
    assert row.at == local and row.at.tzinfo is not None and row.at.utcoffset() == timedelta(0)


async def test_naive_timestamps_are_refused(db) -> None:
    with pytest.raises(Exception, match="naive"):
        async with db.transaction() as session:
            session.add(AuditRow(audit_id="t2", at=datetime(2026, 1, 1), actor="a", action="b",
                                 subject="c"))


def acknowledged() -> asyncio.Future[None]:
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ack.set_result(None)
    return ack


def refused(exc: Exception) -> asyncio.Future[None]:
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ack.set_exception(exc)
    return ack


async def test_outbox_stages_once_and_flushes_in_order(db) -> None:
    async with db.transaction() as session:
        for n in (1, 2, 3):
            await outbox.stage(session, AUDIT, event(n), key="s", event_id=f"e{n}")
        await outbox.stage(session, AUDIT, event(1), key="s", event_id="e1")  # repeated id
    sent: list[str] = []

    async def send(topic, key, event_id, subtype, payload, headers):
        sent.append(event_id)
        return acknowledged()

    assert await outbox.flush(db, send) == 3
    assert sent == ["e1", "e2", "e3"]
    assert await outbox.flush(db, send) == 0  # stamped: nothing is published twice
    async with db.transaction() as session:
        rows = (await session.execute(select(OutboxRow))).scalars().all()
    assert all(r.published_at is not None for r in rows)


@pytest.mark.parametrize("fails", ["handing over", "acknowledging"])
async def test_a_failed_send_leaves_events_pending(db, fails: str) -> None:
    async with db.transaction() as session:
        await outbox.stage(session, AUDIT, event(1), key="s", event_id="e1")

    async def broken(*_args: object):
        if fails == "handing over":
            raise ConnectionError("broker down")
        return refused(ConnectionError("broker down"))  # handed over, never acknowledged

    with pytest.raises(ConnectionError):
        await outbox.flush(db, broken)
    delivered: list[str] = []

    async def send(topic, key, event_id, *_rest):
        delivered.append(event_id)
        return acknowledged()

    assert await outbox.flush(db, send) == 1 and delivered == ["e1"]


async def test_stopping_the_relay_lets_its_flush_finish(db) -> None:
    """A flush under way at shutdown is finished, not cancelled mid-transaction (whose
    cancelled rollback logged an error), and what was committed just before goes out."""
    async with db.transaction() as session:
        await outbox.stage(session, AUDIT, event(1), key="s", event_id="e1")
    handed: list[str] = []
    first, release = asyncio.Event(), asyncio.Event()

    async def slow(topic, key, event_id, subtype, payload, headers):
        handed.append(event_id)
        first.set()
        await release.wait()
        return acknowledged()

    relay = outbox.OutboxRelay(db, slow, interval=60)
    relay.start()
    relay.kick()
    await asyncio.wait_for(first.wait(), 5)
    async with db.transaction() as session:  # committed while the first flush waits
        await outbox.stage(session, AUDIT, event(2), key="s", event_id="e2")
    stopping = asyncio.create_task(relay.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert handed == ["e1", "e2"]
    async with db.transaction() as session:
        rows = (await session.execute(select(OutboxRow))).scalars().all()
    assert len(rows) == 2 and all(r.published_at is not None for r in rows)


async def test_a_relay_that_cannot_finish_is_stopped_after_its_grace(db, monkeypatch, caplog) -> None:
    async with db.transaction() as session:
        await outbox.stage(session, AUDIT, event(1), key="s", event_id="e1")
    handed = asyncio.Event()

    async def stuck(*_args: object):
        handed.set()
        await asyncio.Event().wait()  # the broker never answers

    monkeypatch.setattr(outbox, "STOP_SECONDS", 0.2)
    relay = outbox.OutboxRelay(db, stuck, interval=60)
    relay.start()
    relay.kick()
    await asyncio.wait_for(handed.wait(), 5)
    await asyncio.wait_for(relay.stop(), 5)
    assert "still flushing" in caplog.text
    async with db.transaction() as session:  # not stamped: published after the restart
        assert (await session.execute(select(OutboxRow))).scalar_one().published_at is None


async def test_bulk_inserts_store_what_sqlalchemy_would_store(db) -> None:
    """The SQLite fast path of ``bulk.insert_rows`` against SQLAlchemy's own executemany:
    the same rows, read back raw (no result processing), must be identical; on PostgreSQL
    both calls are SQLAlchemy's."""
    from sqlalchemy import text

    from prevent.platform.storage.bulk import insert_rows
    from prevent.platform.storage.db import JsonText
    from prevent.platform.storage.tables import IncidentRow

    table = IncidentRow.__table__
    tz = timezone(timedelta(hours=-5, minutes=-30))
    moments = [datetime(2026, 3, 1, 23, 30, tzinfo=tz), datetime(2026, 3, 2, 4, 0, 0, 7, tzinfo=UTC),
               datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]

    def rows(prefix: str) -> list[dict]:
        return [{"incident_id": f"{prefix}{n}", "content_hash": "h", "feed_id": "f√",
                 "cluster_id": None if n == 1 else "c", "title": "Église — 教会 'quoted'",
                 "published_at": at, "received_at": moments[0],
                 "payload": JsonText('{"a": [1, 2]}') if n else {"b": None, "ü": 1.5},
                 "classification": None if n == 2 else {"communities": ["x"]}}
                for n, at in enumerate(moments)]

    async with db.transaction() as session:
        await insert_rows(session, table, rows("fast-"))
        await insert_rows(session, table, rows("core-"), fast=False)
        await insert_rows(session, table, rows("fast-"), skip_existing=("incident_id", "content_hash"))
    async with db.transaction() as session:
        stored = (await session.execute(text(
            "SELECT incident_id, content_hash, feed_id, cluster_id, title, CAST(published_at AS TEXT), "
            "CAST(received_at AS TEXT), CAST(payload AS TEXT), CAST(classification AS TEXT) "
            "FROM incidents ORDER BY incident_id"))).all()
    fast = [row[1:] for row in stored if row[0].startswith("fast-")]
    core = [row[1:] for row in stored if row[0].startswith("core-")]
    assert len(fast) == len(core) == 3
    assert fast == core
    # And they read back as the same aware UTC times through the models.
    async with db.transaction() as session:
        back = (await session.execute(select(IncidentRow.published_at).where(
            IncidentRow.incident_id.like("fast-%")).order_by(IncidentRow.incident_id))).scalars().all()
    assert back == [m.astimezone(UTC) for m in moments]


async def test_sqlite_commits_leave_the_wal_to_a_background_checkpoint(db) -> None:
    """A large transaction's commit does not copy its pages into the database file (that
    copy and its fsync cost a rules batch about 45 ms); ``checkpoint_soon`` does, in the
    background. On PostgreSQL there is nothing to do."""
    from prevent.platform.storage.db import WAL_AUTOCHECKPOINT_PAGES
    from prevent.platform.storage.tables import OutboxRow

    if db.dialect != "sqlite":
        db.checkpoint_soon()
        assert db._checkpoint is None
        return
    path = Path(db.url.split("///", 1)[1])
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == WAL_AUTOCHECKPOINT_PAGES
    before = _size(path)
    # About 8 MB: twice SQLite's default autocheckpoint (1000 pages of 4 KB)
    async with db.transaction() as session:
        await session.execute(OutboxRow.__table__.insert(), [
            {"event_id": f"e{n}", "topic": "t", "key": "k", "payload": "x" * 2000,
             "created_at": datetime(2026, 1, 1, tzinfo=UTC)} for n in range(4000)])
    assert _size(path) - before < 1_000_000  # still in the WAL
    db.checkpoint_soon()
    db.checkpoint_soon()  # one under way: not started twice
    task = db._checkpoint
    assert task is not None
    await task
    assert _size(path) - before > 8_000_000


def _size(path: Path) -> int:
    return path.stat().st_size


async def test_a_large_set_is_one_parameter_and_matches_exactly(db) -> None:
    """``membership.one_of``: the rows whose column is in the set, and only those, with
    values JSON or SQL would need to escape, repeated values, an empty set, and a set of
    40,000 values in one statement."""
    from prevent.platform.storage.bulk import insert_rows
    from prevent.platform.storage.membership import one_of
    from prevent.platform.storage.tables import IncidentRow

    odd = ['quote \' "double"', "back\\slash", "Église 教会", "comma, [bracket]", "%_like"]
    ids = odd + [f"inc-{n}" for n in range(20)]
    at = datetime(2026, 3, 1, tzinfo=UTC)
    async with db.transaction() as session:
        await insert_rows(session, IncidentRow.__table__, [
            {"incident_id": i, "content_hash": "h", "feed_id": "f", "cluster_id": None, "title": "t",
             "published_at": at, "received_at": at, "payload": {}, "classification": None}
            for i in ids])
    wanted = [*odd[:3], "inc-4", "inc-19", *(f"absent-{n}" for n in range(40_000)), "inc-4"]
    async with db.transaction() as session:
        found = (await session.execute(select(IncidentRow.incident_id).where(
            one_of(session, IncidentRow.incident_id, wanted)))).scalars().all()
        none = (await session.execute(select(IncidentRow.incident_id).where(
            one_of(session, IncidentRow.incident_id, [])))).scalars().all()
    assert sorted(found) == sorted([*odd[:3], "inc-4", "inc-19"])
    assert none == []
