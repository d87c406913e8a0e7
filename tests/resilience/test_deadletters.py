"""`prevent deadletters list|replay`: dead letters written by the consumers' own
``prevent.platform.messaging.dead_letter`` are listed with their origin and error, and a chosen one is
re-published to its origin topic with the original key and value, x-* headers stripped. On both
engines: an embedded broker of its own, and the session's Apache Kafka with fresh topics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import Engine
from typer.testing import CliRunner

from prevent.cli.main import app
from prevent.contracts import INCIDENTS, cloudevent_headers
from prevent.platform.broker import EmbeddedBroker, ensure_topics, run_sync
from prevent.platform.config import Settings, get_settings
from prevent.platform.messaging import PermanentError, dead_letter, make_broker
from prevent.platform.runtime import topic_configs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
ONE_PARTITION = {**TEST_TOPICS, INCIDENTS.name: 1}


@contextmanager
def broker_for(engine: Engine, topics: Mapping[str, int]) -> Iterator[str]:
    """A bootstrap with ``topics``: an embedded broker of its own, or the session's Apache
    Kafka (``system_engine`` deleted every prevent topic before; created here)."""
    if not engine.is_kafka:
        with EmbeddedBroker(topics=topics) as broker:
            yield broker.bootstrap
        return
    run_sync(lambda: ensure_topics(engine.bootstrap, topics, configs=topic_configs(Settings())))
    yield engine.bootstrap


async def read(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` (one partition), up to the end offset read first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        # Assigned, not looked up: an unsubscribed consumer's metadata on Apache Kafka lists no
        # partitions of the topic (issue 24, finding 2).
        partitions = [TopicPartition(topic, 0)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=500)
            found += [r for rs in batches.values() for r in rs]
        return sorted(found, key=lambda r: r.offset)
    finally:
        await consumer.stop()


async def poison_and_dead_letter(bootstrap: str) -> list[Any]:
    """Two bad incidents on the topic, dead-lettered as the rules consumer would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        headers = [(k, v.encode()) for k, v in cloudevent_headers(INCIDENTS, "ev-1", "test").items()]
        await producer.send_and_wait(INCIDENTS.name, b"{not json", key=b"inc-a", headers=headers)
        await producer.send_and_wait(INCIDENTS.name, b'{"schema_version": 9}', key=b"inc-b",
                                     headers=headers)
    finally:
        await producer.stop()
    records = await read(bootstrap, INCIDENTS.name)
    broker = make_broker(Settings(kafka_bootstrap=bootstrap), bootstrap, client_id="rules")
    await broker.start()
    try:
        for record, why in zip(records, ("invalid JSON", "unknown schema_version 9"), strict=True):
            await dead_letter(broker, record, PermanentError(why), "prevent/rules")
    finally:
        await broker.stop()
    return records


def test_list_then_replay_one_dead_letter_to_its_origin(monkeypatch: pytest.MonkeyPatch,
                                                        system_engine: Engine) -> None:
    runner = CliRunner()
    with broker_for(system_engine, ONE_PARTITION) as bootstrap:
        monkeypatch.setenv("PREVENT_KAFKA_BOOTSTRAP", bootstrap)
        get_settings.cache_clear()
        try:
            originals = asyncio.run(poison_and_dead_letter(bootstrap))

            listed = runner.invoke(app, ["deadletters", "list"])
            assert listed.exit_code == 0, listed.output
            lines = [line for line in listed.stdout.splitlines() if line.strip()]
            assert len(lines) == 2
            assert f"{INCIDENTS.name}[0]@0\tkey=inc-a\tPermanentError: invalid JSON" in lines[0]
            assert f"{INCIDENTS.name}[0]@1\tkey=inc-b\tPermanentError: unknown schema_version 9" in lines[1]
            as_json = runner.invoke(app, ["deadletters", "list", "--json", "--topic", "other.topic"])
            assert as_json.exit_code == 0 and as_json.stdout.strip() == ""

            dry = runner.invoke(app, ["deadletters", "replay", "--topic", INCIDENTS.name, "--offset", "1",
                                      "--dry-run"])
            assert dry.exit_code == 0 and "would replay" in dry.stdout
            assert len(asyncio.run(read(bootstrap, INCIDENTS.name))) == 2

            replayed = runner.invoke(app, ["deadletters", "replay", "--topic", INCIDENTS.name,
                                           "--offset", "1", "--partition", "0"])
            assert replayed.exit_code == 0, replayed.output
            none = runner.invoke(app, ["deadletters", "replay", "--topic", INCIDENTS.name, "--offset", "7"])
            assert none.exit_code == 1

            after = asyncio.run(read(bootstrap, INCIDENTS.name))
        finally:
            get_settings.cache_clear()

    assert len(after) == 3  # exactly the one chosen record was re-published
    again = after[2]
    assert (again.key, again.value) == (originals[1].key, originals[1].value)
    names = [k for k, _ in again.headers]
    assert not [n for n in names if n.startswith("x-")]
    # CloudEvents headers kept (FastStream adds a correlation_id when it dead-letters).
    assert dict(originals[1].headers).items() <= dict(again.headers).items()
