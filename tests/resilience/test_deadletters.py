"""`prevent deadletters list|replay`: dead letters written by the consumers' own
``prevent.messaging.dead_letter`` are listed with their origin and error, and a chosen one is
re-published to its origin topic with the original key and value, x-* headers stripped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fixtures.broker import TEST_TOPICS
from typer.testing import CliRunner

from prevent.broker import EmbeddedBroker
from prevent.cli import app
from prevent.config import Settings, get_settings
from prevent.contracts import INCIDENTS, cloudevent_headers
from prevent.messaging import PermanentError, dead_letter, make_broker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
ONE_PARTITION = {**TEST_TOPICS, INCIDENTS.name: 1}


async def read(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=2000)
        return sorted((r for rs in batches.values() for r in rs), key=lambda r: r.offset)
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


def test_list_then_replay_one_dead_letter_to_its_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    with EmbeddedBroker(topics=ONE_PARTITION) as broker:
        monkeypatch.setenv("PREVENT_KAFKA_BOOTSTRAP", broker.bootstrap)
        get_settings.cache_clear()
        try:
            originals = asyncio.run(poison_and_dead_letter(broker.bootstrap))

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
            assert len(asyncio.run(read(broker.bootstrap, INCIDENTS.name))) == 2

            replayed = runner.invoke(app, ["deadletters", "replay", "--topic", INCIDENTS.name,
                                           "--offset", "1", "--partition", "0"])
            assert replayed.exit_code == 0, replayed.output
            none = runner.invoke(app, ["deadletters", "replay", "--topic", INCIDENTS.name, "--offset", "7"])
            assert none.exit_code == 1

            after = asyncio.run(read(broker.bootstrap, INCIDENTS.name))
        finally:
            get_settings.cache_clear()

    assert len(after) == 3  # exactly the one chosen record was re-published
    again = after[2]
    assert (again.key, again.value) == (originals[1].key, originals[1].value)
    names = [k for k, _ in again.headers]
    assert not [n for n in names if n.startswith("x-")]
    # CloudEvents headers kept (FastStream adds a correlation_id when it dead-letters).
    assert dict(originals[1].headers).items() <= dict(again.headers).items()
