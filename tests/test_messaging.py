"""The delivery policy on a real broker: poison messages are dead-lettered with their origin,
a dependency outage is retried without committing, and the consumer carries on."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from prevent.contracts import DEADLETTER, GlobalIncident
from prevent.platform.broker import ensure_topics
from prevent.platform.config import Settings
from prevent.platform.messaging import (
    PermanentError,
    TransientError,
    classify_error,
    consumer_options,
    make_broker,
)
from prevent.platform.retrying import backoff

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
    assert all(0 <= backoff(a, base=0.2, cap=5) <= 5 for a in range(30))


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
    from prevent.platform.runtime import outbox_sender
    from prevent.platform.storage import outbox
    from prevent.platform.storage.db import Database
    from prevent.platform.storage.tables import OutboxRow

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


# --------------------------------------------------------------------------- issue 24


async def test_consumer_lag_comes_from_the_clusters_metadata(kafka_engine) -> None:
    """End offset - committed offset for every partition the group committed on, on both
    engines (on Apache Kafka the consumer's own metadata left it always empty)."""
    from aiokafka import AIOKafkaProducer

    from prevent.web.lag import consumer_lag

    bootstrap = kafka_engine.bootstrap
    topic = f"test.lag.{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    await ensure_topics(bootstrap, {topic: 2})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for _n in range(5):
            await producer.send_and_wait(topic, b"{}", partition=0)
        for _n in range(3):
            await producer.send_and_wait(topic, b"{}", partition=1)
    finally:
        await producer.stop()
    committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await committer.start()
    try:
        committer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await committer.commit({TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 3})
    finally:
        await committer.stop()
    lag = await consumer_lag(bootstrap, [group, f"{group}-never-committed"])
    assert lag == {(group, topic, 0): 3, (group, topic, 1): 0}


async def _plain_topic(bootstrap: str, name: str) -> None:
    """A topic with the broker's defaults (``message.max.bytes`` about 1 MiB on Apache Kafka),
    as an operator or an earlier release created it."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()
    await ensure_topics(bootstrap, {name: 1})  # waits until it is visible


async def test_a_record_just_under_1mib_is_dead_lettered_cut_to_fit_and_the_partition_moves_on(
        fresh_topics) -> None:
    """A 1,048,400-byte invalid record, accepted by a default-configured cluster (limit
    1,048,588 bytes a batch): the dead letter (its x-* headers make it larger than the
    dead-letter topic allows) is cut to fit and marked, and the ten good records behind it are
    handled. Before: retried without end, the partition stalled."""
    from prevent.platform.messaging import settings_for_broker

    bootstrap = fresh_topics.bootstrap
    topic = f"test.big.{uuid.uuid4().hex[:8]}"
    await _plain_topic(bootstrap, topic)
    await _plain_topic(bootstrap, DEADLETTER.name)
    settings, _ = await settings_for_broker(Settings(kafka_bootstrap=bootstrap), bootstrap)
    broker = make_broker(settings, bootstrap, client_id="test-big")
    handled: list[str] = []
    all_handled = asyncio.Event()

    @broker.subscriber(topic, **consumer_options(settings, f"g-{topic}"))
    async def handle(incident: GlobalIncident) -> None:
        handled.append(incident.title)
        if len(handled) == 10:
            all_handled.set()

    big = b"{" + b"x" * (1_048_400 - 1)
    await broker.start()
    try:
        await broker.publish(big, topic=topic, key=b"big",
                             headers={"ce_id": "big-1", "ce_type": "test"})
        for n in range(10):
            await broker.publish(good_incident(f"good-{n}"), topic=topic, key=b"k")
        await asyncio.wait_for(all_handled.wait(), 60)
        dead = await dead_letters_from(bootstrap, topic, expected=1)
    finally:
        await broker.stop()

    assert handled == [f"good-{n}" for n in range(10)]
    assert len(dead) == 1
    letter = dead[0]
    assert letter["x-origin-offset"] == "0" and letter["ce_id"] == "big-1"
    assert big.startswith(letter["value"])
    if fresh_topics.is_kafka:  # Tansu enforces no topic limit: nothing had to be cut there
        assert letter["x-truncated"] == "true"
        assert letter["x-original-bytes"] == str(len(big))
        assert len(letter["value"]) < len(big)


async def test_dead_letter_topic_created_by_prevent_takes_a_capped_record_whole_or_marked(
        kafka_engine) -> None:
    """With the topic's own max.message.bytes (2 MiB, set at creation), a record larger than
    it is stored cut to fit, never refused."""
    from prevent.platform.messaging import dead_letter

    bootstrap = kafka_engine.bootstrap
    dl = f"test.dl.{uuid.uuid4().hex[:8]}"
    limit = 256 * 1024
    await ensure_topics(bootstrap, {dl: 1}, configs={dl: {"max.message.bytes": str(limit)}})
    broker = make_broker(Settings(kafka_bootstrap=bootstrap), bootstrap, client_id="test-dl")
    record = SimpleNamespace(topic="origin", partition=0, offset=7, key=b"k",
                             value=b"y" * (3 * limit), headers=[("ce_id", b"e1")])
    await broker.connect()
    try:
        assert await dead_letter(broker, record, PermanentError("too big"), "t", max_bytes=limit,
                                 topic=dl)
    finally:
        await broker.stop()
    consumer = AIOKafkaConsumer(dl, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    [stored] = [r for records in batches.values() for r in records]
    headers = {k: v.decode() for k, v in stored.headers}
    assert headers["x-truncated"] == "true" and headers["x-original-bytes"] == str(3 * limit)
    assert 0 < len(stored.value) < limit and headers["x-origin-offset"] == "7"


async def test_dead_letter_gives_up_loudly_after_bounded_attempts(monkeypatch, caplog) -> None:
    """A broker that never takes the dead letter: a bounded number of attempts, then a
    CRITICAL naming the origin and False, so the consumer commits and the partition moves
    on (before: retried without end, the partition stalled)."""
    import logging

    import aiokafka.errors

    from prevent.platform import messaging, retrying

    calls: list[int] = []

    class Refusing:
        async def publish(self, *args: object, **kwargs: object) -> None:
            calls.append(1)
            raise aiokafka.errors.KafkaTimeoutError("broker gone")

    monkeypatch.setattr(retrying, "backoff", lambda retry, **kw: 0.0)
    record = SimpleNamespace(topic="prevent.incidents.v1", partition=2, offset=41, key=b"k",
                             value=b"{bad", headers=[])
    with caplog.at_level(logging.WARNING, logger="prevent.platform.messaging"):
        stored = await asyncio.wait_for(messaging.dead_letter(
            Refusing(), record, PermanentError("bad"), "t", attempts=4), 10)  # type: ignore[arg-type]
    assert stored is False and len(calls) == 4
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical and "prevent.incidents.v1[2]@41" in critical[0].getMessage()


async def test_dead_letter_without_a_limit_uses_the_one_make_broker_was_configured_with() -> None:
    """The rules consumer dead-letters without naming a limit: the broker's configured
    ``kafka_deadletter_max_bytes`` applies, so its dead letters fit too."""
    from prevent.platform import messaging

    broker = make_broker(Settings(kafka_deadletter_max_bytes=64 * 1024), "127.0.0.1:9",
                         client_id="rules")
    sent: list[tuple[bytes, dict[str, str]]] = []

    async def publish(payload: bytes, **kwargs: object) -> None:
        sent.append((payload, kwargs["headers"]))  # type: ignore[arg-type]

    broker.publish = publish  # type: ignore[method-assign]
    record = SimpleNamespace(topic="prevent.incidents.v1", partition=0, offset=1, key=b"k",
                             value=b"z" * (200 * 1024), headers=[("ce_id", b"e")])
    assert await messaging.dead_letter(broker, record, PermanentError("x"), "rules")
    [(payload, headers)] = sent
    assert 0 < len(payload) < 64 * 1024 and headers["x-truncated"] == "true"
    assert headers["x-original-bytes"] == str(200 * 1024) and headers["ce_id"] == "e"


class _Message:
    """What the middleware sees of a consumed message: its record(s), whether it is
    acknowledged, and ``ack`` (a commit), which may fail as a rebalanced group's does."""

    def __init__(self, raw: object, *, committed: object = None, error: Exception | None = None) -> None:
        self.raw_message, self.committed, self.error, self.acks = raw, committed, error, 0

    async def ack(self) -> None:
        self.acks += 1
        if self.error is not None:
            raise self.error
        self.committed = "acked"


async def test_a_commit_refused_after_a_rebalance_is_a_warning_not_a_critical_traceback(caplog) -> None:
    """After a node dies or a session expires under load, the group has rebalanced and the
    commit of a handled message is refused (CommitFailedError). The partition's new owner
    reads it again and the handlers are idempotent: one WARNING naming the record, no
    exception (before: FastStream's NACK_ON_ERROR logged it as CRITICAL with a traceback)."""
    import logging

    import aiokafka.errors

    from prevent.platform import messaging

    record = SimpleNamespace(topic="prevent.alerts.v1", partition=1, offset=12, key=b"k", value=b"{}",
                             headers=[])
    refused = _Message(record, error=aiokafka.errors.CommitFailedError("group rebalanced"))
    with caplog.at_level(logging.WARNING, logger="prevent.platform.messaging"):
        await messaging.commit(refused)
    assert refused.acks == 1
    [warning] = [r for r in caplog.records if r.name == "prevent.platform.messaging"]
    assert warning.levelno == logging.WARNING and "prevent.alerts.v1[1]@12" in warning.getMessage()
    assert warning.exc_info is None


async def test_the_middleware_commits_single_messages_only_once_and_never_a_batch() -> None:
    from prevent.platform import messaging

    record = SimpleNamespace(topic="t", partition=0, offset=3, key=None, value=b"{}", headers=[])
    single = _Message(record)
    await messaging.commit(single)
    await messaging.commit(single)  # already acknowledged: nothing more
    batch = _Message((record, record))  # the rules consumer commits each stored batch itself
    await messaging.commit(batch)
    early = _Message(record, committed="acked")  # ACK_FIRST, the group-less readers
    await messaging.commit(early)
    assert (single.acks, batch.acks, early.acks) == (1, 0, 0)
    assert consumer_options(Settings(), "g")["ack_policy"] == messaging.AckPolicy.MANUAL
