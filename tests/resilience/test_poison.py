"""A poison message on each input topic goes to prevent.deadletter.v1 with its origin and the
reason, and every consumer carries on with the next message."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from prevent.cli.services import running_system
from prevent.contracts import ALERTS, DEADLETTER, INCIDENTS, PLAYBOOKS, GlobalIncident, stable_id, utcnow

pytestmark = pytest.mark.e2e

POISON = {
    "invalid JSON": b"{not json",
    "wrong schema version": b'{"schema_version": 2, "incident_id": "x"}',
    "5 MB value": b"{" + b" " * (5 * 1024 * 1024) + b"}",
}


async def dead_letters(bootstrap: str, expected: int, limit: float = 30) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(DEADLETTER.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        deadline = asyncio.get_running_loop().time() + limit
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [{k: v.decode() for k, v in r.headers} for r in records]
    finally:
        await consumer.stop()
    return found


async def test_poison_on_every_input_topic_is_dead_lettered(settings, system_engine) -> None:
    config = settings.model_copy(update={"demo": True,
                                         "kafka_bootstrap": system_engine.bootstrap or None})
    async with running_system(config, feeds=[]) as system:
        producer = AIOKafkaProducer(bootstrap_servers=system.bootstrap, acks="all",
                                    max_request_size=8 * 1024 * 1024)
        await producer.start()
        try:
            for topic in (INCIDENTS.name, ALERTS.name, PLAYBOOKS.name):
                for value in POISON.values():
                    await producer.send_and_wait(topic, value, key=b"poison")
            now = utcnow() - timedelta(minutes=1)
            good = GlobalIncident(
                incident_id=stable_id("inc", "after-poison"), feed_id="wire", kind="rss",
                title="Gunman kills 12 worshippers in attack on mosque",
                summary="A gunman opened fire in a mosque during prayers, killing 12.",
                published=now, first_seen=now, content_hash="h")
            await producer.send_and_wait(INCIDENTS.name, good.model_dump_json().encode(),
                                         key=good.incident_id.encode())
        finally:
            await producer.stop()
        # incidents and playbooks: the rules consumer; alerts: the centre and the patrol notifier.
        dead = await dead_letters(system.bootstrap, expected=3 + 3 * 2 + 3)
        for _ in range(150):  # the good incident after the poison still reaches the centre
            if system.sink.received:
                break
            await asyncio.sleep(0.2)
        assert len(system.sink.received) == 1, "the consumers must carry on after poison"

    by_origin = Counter(d["x-origin-topic"] for d in dead)
    assert by_origin == {INCIDENTS.name: 3, ALERTS.name: 6, PLAYBOOKS.name: 3}
    reasons = " | ".join(d["x-error"] for d in dead)
    assert "invalid JSON" in reasons and "schema_version" in reasons and "exceeds" in reasons
    assert all(d["x-origin-offset"].isdigit() for d in dead)
