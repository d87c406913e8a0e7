"""The broker becomes unreachable while the watcher runs: no entry is marked seen before Kafka
acknowledged it, a poll whose publishes all fail keeps the old validators, and after the
broker comes back (a new Tansu on the same port: it is memory-only, so the topics are created
again before the next poll) every entry is published, exactly once.

The watcher publishes through the project's FastStream broker to a real embedded broker;
polls are driven by the test so that each step happens in a known order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from feeds.server import FeedServer
from fixtures.broker import TEST_TOPICS
from sqlalchemy import func, select

from prevent.broker import EmbeddedBroker
from prevent.config import Settings
from prevent.contracts import INCIDENTS, GlobalIncident, utcnow
from prevent.feeds.fetch import Fetcher, new_client
from prevent.feeds.registry import FeedConfig
from prevent.feeds.watcher import FeedWatcher
from prevent.messaging import make_broker
from prevent.netutil import free_port
from prevent.runtime import ServiceContext
from prevent.services import incident_publisher
from prevent.storage.db import Database
from prevent.storage.tables import FeedState, SeenEntry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
ENTRIES = 30


def feed_xml() -> bytes:
    when = format_datetime(utcnow() - timedelta(minutes=5))
    items = "".join(f"<item><guid>wire-{i}</guid><title>Council meeting number {i} held</title>"
                    f"<link>https://wire.example.org/{i}</link><pubDate>{when}</pubDate>"
                    f"<description>Item {i}.</description></item>" for i in range(ENTRIES))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Wire</title>'
            f"<link>https://wire.example.org/</link>{items}</channel></rss>").encode()


async def on_topic(bootstrap: str, settle: float = 3.0) -> list[tuple[bytes, GlobalIncident]]:
    consumer = AIOKafkaConsumer(INCIDENTS.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        found: list[tuple[bytes, GlobalIncident]] = []
        deadline = asyncio.get_running_loop().time() + settle
        while asyncio.get_running_loop().time() < deadline:  # read everything there is
            batches = await consumer.getmany(timeout_ms=500)
            found += [(r.key, GlobalIncident.model_validate_json(r.value))
                      for rs in batches.values() for r in rs]
        return found
    finally:
        await consumer.stop()


async def count(db: Database, model: type) -> int:
    async with db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar() or 0)


async def _watch_invariant(db: Database, acked: set[str], violations: list[set[str]]) -> None:
    """Every 20 ms: nothing in seen_entries that Kafka has not acknowledged."""
    while True:
        async with db.transaction() as session:
            seen = set((await session.execute(select(SeenEntry.incident_id))).scalars())
        if seen - acked:
            violations.append(seen - acked)
        await asyncio.sleep(0.02)


@pytest.fixture
async def feed() -> AsyncIterator[FeedConfig]:
    body = feed_xml()
    server = FeedServer({"/feed": lambda req: (304, {}, b"") if req.headers.get("if-none-match") == '"v1"'
                         else (200, {"Content-Type": "application/rss+xml", "ETag": '"v1"'}, body)})
    server.start()
    try:
        yield FeedConfig(id="wire", url=server.url("/feed"), kind="rss", interval_seconds=3600)
    finally:
        server.stop()


async def test_broker_outage_nothing_seen_before_published_then_everything_published(
        tmp_path: Path, feed: FeedConfig) -> None:
    port = free_port()
    settings = Settings(var_dir=tmp_path / "var", secret_key="s", demo=False,
                        allow_private_addresses=True, kafka_bootstrap=f"127.0.0.1:{port}")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'watcher.db'}")
    await db.upgrade()
    first = await EmbeddedBroker(topics=TEST_TOPICS, port=port).astart()
    second: EmbeddedBroker | None = None
    # aiokafka's default request timeout is 40 s: each publish to a dead broker would take that
    # long to fail (6 attempts: 4 minutes per poll). A short one keeps the test bounded.
    kafka = make_broker(settings, first.bootstrap, client_id="watcher", request_timeout_ms=2000)
    await kafka.start()
    acked: set[str] = set()
    publish = incident_publisher(ServiceContext(settings, db, kafka, None, None, "prevent/watcher"))  # type: ignore[arg-type]

    async def publish_and_record(incident: GlobalIncident) -> None:
        await publish(incident)
        acked.add(incident.incident_id)

    violations: list[set[str]] = []
    monitor = asyncio.create_task(_watch_invariant(db, acked, violations))
    try:
        async with new_client(settings) as client:
            watcher = FeedWatcher([feed], db, Fetcher.from_settings(client, settings), publish_and_record,
                                  settings=settings, publish_attempts=3, publish_backoff=0.2)
            await first.astop()  # the broker goes away while the watcher runs

            outcome = await asyncio.wait_for(watcher.poll(feed.id), 60)
            assert outcome.error is not None and outcome.error.startswith("publish")
            assert acked == set() and await count(db, SeenEntry) == 0
            async with db.transaction() as session:
                state = await session.get(FeedState, feed.id)
            assert state is not None and state.etag is None, "validators must not hide the entries"
            assert state.consecutive_errors == 0, "a broker outage does not count towards disabling"

            # The broker comes back (memory-only: with its topics created anew before it is
            # used, as a restarted cluster would have them); the next poll publishes it all.
            second = await EmbeddedBroker(topics=TEST_TOPICS, port=port).astart()
            watcher.publish_attempts, watcher.publish_backoff = 8, 0.5
            outcome = await asyncio.wait_for(watcher.poll(feed.id), 60)
            assert outcome.error is None and outcome.published == ENTRIES
            assert await count(db, SeenEntry) == ENTRIES

            # Everything is on the topic now; a third poll (304) publishes nothing more.
            again = await watcher.poll(feed.id)
            assert again.not_modified and again.published == 0
            records = await on_topic(second.bootstrap)
    finally:
        monitor.cancel()
        await kafka.stop()
        if second is not None:
            await second.astop()
        await first.astop()
        await db.dispose()

    assert violations == [], f"entries marked seen before Kafka acknowledged them: {violations[:1]}"
    assert len(acked) == ENTRIES
    ids = {incident.incident_id for _, incident in records}
    assert ids == acked  # every entry published, each under its own key
    assert all(key == incident.incident_id.encode() for key, incident in records)
    # The first broker died with whatever reached it; on the new one each entry appears once.
    assert len(records) == ENTRIES
