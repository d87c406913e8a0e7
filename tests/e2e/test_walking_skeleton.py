"""One feed item travels feed → watcher → Kafka → rules → Kafka → notifiers → SMTP and Kafka.

Every stage runs as its Kafka subscriber on a real embedded broker; nothing calls
another stage directly.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from prevent.cli.services import running_system
from prevent.contracts import PATROLS, PatrolAssignment, utcnow
from prevent.feeds.catalog import FeedConfig
from prevent.platform.demo import DemoFeedServer, SmtpSink

pytestmark = pytest.mark.e2e


def fixture_feed() -> bytes:
    when = format_datetime(utcnow() - timedelta(minutes=5))
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Fixture wire</title><link>https://wire.example.org/</link>
<item><guid>wire-1</guid><title>Gunman kills 12 worshippers in attack on mosque</title>
<link>https://wire.example.org/1?utm_source=x</link><pubDate>{when}</pubDate>
<description>A gunman opened fire inside a mosque during prayers, killing 12 people.</description></item>
<item><guid>wire-2</guid><title>Church Street closed for resurfacing work</title>
<link>https://wire.example.org/2</link><pubDate>{when}</pubDate>
<description>Traffic is diverted while Church Street is resurfaced.</description></item>
</channel></rss>""".encode()


async def wait_for(predicate, limit: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the pipeline")
        await asyncio.sleep(0.2)


async def patrols_on_kafka(bootstrap: str, settle: float = 2.0) -> list[PatrolAssignment]:
    consumer = AIOKafkaConsumer(PATROLS.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=int(settle * 1000))
        return [PatrolAssignment.model_validate_json(m.value)
                for msgs in batches.values() for m in msgs]
    finally:
        await consumer.stop()


async def test_feed_item_reaches_the_centre_inbox_and_the_patrol_topic(settings, system_engine,
                                                                      tmp_path: Path,
                                                                      monkeypatch) -> None:
    feed_server = DemoFeedServer()
    body = fixture_feed()
    feed_server.server.RequestHandlerClass.do_GET = _serve(body)  # type: ignore[method-assign]
    feed_server.start()
    sink = SmtpSink().start()
    try:
        config = settings.model_copy(update={"smtp_port": sink.port, "demo": True,
                                             "kafka_bootstrap": system_engine.bootstrap or None})
        feeds = [FeedConfig(id="fixture-wire", url=feed_server.url, kind="rss",
                            interval_seconds=3600)]
        async with running_system(config, feeds=feeds) as system:
            await wait_for(lambda: len(sink.received) >= 1)
            await asyncio.sleep(3)  # would a second notice or a duplicate arrive?
            patrols = await patrols_on_kafka(system.bootstrap)
            lag = await system.console_state().lag()  # what /metrics serves
    finally:
        sink.stop()
        feed_server.stop()

    assert len(sink.received) == 1
    # The consumer lag on /metrics, on both engines: every group's committed partitions, 0 left.
    for group in ("prevent-rules", "prevent-centre-notifier", "prevent-patrol-notifier"):
        # (prometheus_client writes the labels sorted by name)
        assert f'prevent_consumer_lag{{group="{group}",partition=' in lag, (group, lag)
    assert re.search(r'group="prevent-rules",partition="\d+",topic="prevent\.incidents\.v1"', lag)
    mail = sink.received[0]
    assert mail.to == ("admin@riverside-centre.example.org",)
    assert "mosque" in mail.subject
    assert "/ack/" in mail.text
    assert len(patrols) == 1
    assert patrols[0].site_id == "site-masjid-riverside"
    assert patrols[0].floor_plan_ref == "FP-SAMPLE-0001"


def _serve(body: bytes):
    def do_get(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return do_get
