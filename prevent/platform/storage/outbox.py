"""Transactional outbox: stage events with the state change, publish them after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import Contract, Topic, utcnow
from prevent.platform.storage.db import Database
from prevent.platform.storage.dialect import insert_ignore
from prevent.platform.storage.tables import OutboxRow

log = logging.getLogger("prevent.outbox")

# (topic name, key, event id, subtype, payload json, extra headers) -> hands the event to the
# producer, in call order, and returns what to await for the broker's acknowledgement (it
# raises if the event was not accepted).
Sender = Callable[[str, str, str, str | None, str, dict[str, str]], Awaitable[Awaitable[object]]]


async def stage(session: AsyncSession, topic: Topic, event: Contract, *, key: str,
                event_id: str, subtype: str | None = None,
                headers: dict[str, str] | None = None) -> None:
    """Add an event to the outbox in the caller's transaction; a repeated event id is a no-op."""
    stmt = insert_ignore(session, OutboxRow, ["event_id"]).values(
        event_id=event_id, topic=topic.name, key=key, subtype=subtype, headers=headers,
        payload=event.model_dump_json(), created_at=utcnow(),
    )
    await session.execute(stmt)


async def flush(db: Database, send: Sender, *, batch: int = 500) -> int:
    """Publish pending events in order; returns how many were published. A batch is handed to
    the producer in order without waiting for each acknowledgement (the producer keeps a
    partition's order), then every acknowledgement is awaited before the batch is stamped: an
    event not acknowledged stays pending and is published again (consumers drop repeats by
    event id)."""
    total = 0
    while True:
        async with db.transaction() as session:
            rows = (await session.execute(
                select(OutboxRow.seq, OutboxRow.topic, OutboxRow.key, OutboxRow.event_id,
                       OutboxRow.subtype, OutboxRow.payload, OutboxRow.headers)
                .where(OutboxRow.published_at.is_(None)).order_by(OutboxRow.seq).limit(batch)
            )).all()
        if not rows:
            return total
        acks: list[Awaitable[object]] = []
        try:
            # A loop, not a comprehension (PERF401): the finally must await what was handed over
            for row in rows:
                acks.append(await send(row.topic, row.key, row.event_id, row.subtype,  # noqa: PERF401
                                       row.payload, row.headers or {}))
        finally:  # what was handed over is awaited, even when a later event could not be
            outcomes = await asyncio.gather(*acks, return_exceptions=True)
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            raise failed
        async with db.transaction() as session:
            await session.execute(update(OutboxRow).where(OutboxRow.seq.in_([r.seq for r in rows]))
                                  .values(published_at=utcnow()))
        total += len(rows)


# On shutdown a flush under way gets this long to finish before it is cancelled: cancelled
# mid-transaction, its connection's rollback is cancelled too (an error in the log, though
# nothing is lost: what was not stamped is published again).
STOP_SECONDS = 5.0


class OutboxRelay:
    """Flushes the outbox on demand and every ``interval`` seconds as a safety net."""

    def __init__(self, db: Database, send: Sender, interval: float = 1.0) -> None:
        self._db = db
        self._send = send
        self._interval = interval
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def flush(self) -> int:
        async with self._lock:  # one flusher per process keeps the order
            return await flush(self._db, self._send)

    def kick(self) -> None:
        """Ask for a flush soon, without waiting for it (new events were committed)."""
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()  # once more when stopping: what was committed goes out now
            except Exception as exc:  # noqa: BLE001 - keep relaying; the next round retries
                log.warning("outbox flush failed, will retry: %s", exc)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="outbox-relay")

    async def stop(self) -> None:
        """Let the flush under way (and one last one) finish, for ``STOP_SECONDS`` at most."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_SECONDS)
        if not done:
            log.warning("outbox relay still flushing after %.0f s; stopping it (what was not "
                        "published is published after the restart)", STOP_SECONDS)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
