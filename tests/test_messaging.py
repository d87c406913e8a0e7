"""The delivery policy on a real broker: poison messages are dead-lettered with their origin,
a dependency outage is retried without committing, and the consumer carries on."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from prevent.broker import ensure_topics
from prevent.config import Settings
from prevent.contracts import DEADLETTER, GlobalIncident
from prevent.messaging import (
    PermanentError,
    TransientError,
    backoff_delay,
    classify_error,
    consumer_options,
    make_broker,
)

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def good_incident(title: str) -> bytes:
    return GlobalIncident(incident_id=f"inc-{title}", feed_id="f", kind="rss", title=title,
                          published=NOW, first_seen=NOW, content_hash="h").model_dump_json().encode()


async def dead_letters_from(bootstrap: str, origin_topic: str, expected: int) -> list[dict]:
    consumer = AIOKafkaConsumer(DEADLETTER.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    found: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    if headers.get("x-origin-topic") == origin_topic:
                        found.append(headers | {"value": r.value})
    finally:
        await consumer.stop()
    return found


def test_errors_are_classified() -> None:
    assert classify_error(ConnectionRefusedError()) == "transient"
    assert classify_error(TransientError("db down")) == "transient"
    assert classify_error(PermanentError("bad")) == "permanent"
    assert classify_error(json.JSONDecodeError("x", "doc", 0)) == "permanent"
    assert classify_error(ZeroDivisionError()) == "unknown"
    assert all(0 <= backoff_delay(a, cap=5) <= 5 for a in range(30))


async def test_poison_messages_are_dead_lettered_and_the_consumer_carries_on(kafka_bootstrap) -> None:
    topic = f"test.poison.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    broker = make_broker(settings, kafka_bootstrap, client_id="test-poison")
    handled: list[str] = []
    outage = {"remaining": 2}
    both_handled = asyncio.Event()

    @broker.subscriber(topic, **consumer_options(settings, f"g-{topic}"))
    async def handle(incident: GlobalIncident) -> None:
        if incident.title == "needs-db" and outage["remaining"]:
            outage["remaining"] -= 1
            raise TransientError("database unavailable")
        handled.append(incident.title)
        if len(handled) == 2:
            both_handled.set()

    await broker.start()
    try:
        for value in (b"{not json", b'{"schema_version": 9}', good_incident("needs-db"),
                      b"x" * (5 * 1024 * 1024 - 100), good_incident("after")):
            await broker.publish(value, topic=topic, key=b"k")
        dead = await dead_letters_from(kafka_bootstrap, topic, expected=3)
        await asyncio.wait_for(both_handled.wait(), 10)
    finally:
        await broker.stop()

    assert handled == ["needs-db", "after"]  # retried in place, in order, then carried on
    assert [d["x-origin-offset"] for d in dead] == ["0", "1", "3"]
    assert "invalid JSON" in dead[0]["x-error"]
    assert "schema_version" in dead[1]["x-error"]
    assert dead[2]["x-error-kind"] == "PermanentError"
    assert dead[0]["value"] == b"{not json"
    assert all(d["x-dead-lettered-by"] == "test-poison" for d in dead)


async def test_offsets_are_committed_only_after_the_handler_returned(kafka_bootstrap) -> None:
    topic = f"test.commit.{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    broker = make_broker(settings, kafka_bootstrap, client_id="test-commit")
    entered = asyncio.Event()

    @broker.subscriber(topic, **consumer_options(settings, group))
    async def handle(incident: GlobalIncident) -> None:
        entered.set()
        await asyncio.sleep(3600)  # a handler that never finishes (e.g. killed mid-way)

    await broker.start()
    await broker.publish(good_incident("slow"), topic=topic, key=b"k")
    await asyncio.wait_for(entered.wait(), 15)
    await broker.stop()

    probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    await probe.start()
    try:
        committed = await probe.committed(TopicPartition(topic, 0))
    finally:
        await probe.stop()
    assert committed in (None, 0), "an unfinished message must not be committed"


@pytest.mark.parametrize("policy_group", [None])
def test_group_less_readers_commit_nothing(policy_group) -> None:
    opts = consumer_options(Settings(), policy_group)
    assert opts["auto_offset_reset"] == "latest" and opts["group_id"] is None


async def test_the_outbox_relay_publishes_a_keys_events_in_order_and_stamps_them_after_the_acks(
        kafka_bootstrap, tmp_path) -> None:
    """Events handed over without waiting for each acknowledgement still arrive in the order
    they were staged (the producer keeps a partition's order), and are stamped published only
    once the broker acknowledged them."""
    from sqlalchemy import func, select

    from prevent.contracts import AUDIT, AuditEvent
    from prevent.runtime import outbox_sender
    from prevent.storage import outbox
    from prevent.storage.db import Database
    from prevent.storage.tables import OutboxRow

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    await db.upgrade()
    subject = f"alert:{uuid.uuid4().hex[:8]}"
    ids = [f"{subject}:{n}" for n in range(300)]
    async with db.transaction() as session:
        for n, event_id in enumerate(ids):
            await outbox.stage(session, AUDIT, AuditEvent(
                audit_id=event_id, at=datetime(2026, 1, 1, tzinfo=UTC), actor="test",
                action=f"step.{n}", subject=subject), key=subject, event_id=event_id)
    broker = make_broker(Settings(kafka_bootstrap=kafka_bootstrap), kafka_bootstrap, client_id="relay")
    await broker.start()
    try:
        assert await outbox.flush(db, outbox_sender(broker, "test")) == 300
    finally:
        await broker.stop()
    async with db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(OutboxRow).where(
            OutboxRow.published_at.is_(None)))).scalar() == 0
    consumer = AIOKafkaConsumer(AUDIT.name, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        received: list[str] = []
        async with asyncio.timeout(30):
            while len(received) < 300:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received += [json.loads(r.value)["audit_id"] for r in records
                                 if r.key == subject.encode()]
    finally:
        await consumer.stop()
    assert received == ids
    await db.dispose()
