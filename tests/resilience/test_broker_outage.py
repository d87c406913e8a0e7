"""The broker becomes unreachable while the watcher runs: no entry is marked seen before Kafka
acknowledged it, a poll whose publishes fail keeps the old validators (and does not count
towards auto-disable), and once the broker is reachable again every entry is published,
exactly once.

* ``test_broker_unreachable_...``: one Tansu keeps running behind a :class:`TcpProxy`, and
  the broker advertises the proxy's port, so every connection of the watcher's producer
  (bootstrap and partition leader) goes through it. The watcher publishes a first batch,
  then the proxy is cut (open connections reset, new ones refused) while the feed gains
  entries, and restored later: the producer must reconnect on its own.
* ``test_broker_restarted_...``: the broker process dies and a new one starts on the same
  port. Tansu is memory-only, so the topics are created again before the next poll, as a
  restarted cluster would have them (a publish retried into a Tansu whose topics did not
  exist yet was reported acknowledged but never readable). Here the outage starts before the
  watcher published anything, and the producer reconnects to another broker process.

Both run on Tansu and on Apache Kafka (a 1-node cluster of the test's own, since the broker is
cut off or killed: for the proxy test the node advertises the proxy's port; for the restart
the node is SIGKILLed by its recorded pid and started again, keeping its log, so the topics
are still there).

The watcher publishes through the project's FastStream broker; polls are driven by the test
so that each step happens in a known order, and the outage always starts between polls, with
no publish in flight: a request cut after the broker wrote it but before its ack arrived would
be published twice (at-least-once, absorbed downstream by the incident id), and exact counts
on the topic could not be asserted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from feeds.server import FeedServer, Reply, Request
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import ENGINES, start_cluster
from sqlalchemy import func, select

from prevent.cli.services import incident_publisher
from prevent.contracts import INCIDENTS, GlobalIncident, utcnow
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.fetch import Fetcher, new_client
from prevent.feeds.watcher import FeedWatcher, PollOutcome
from prevent.platform.broker import EmbeddedBroker, _pdeathsig_preexec, ensure_topics
from prevent.platform.config import Settings
from prevent.platform.messaging import make_broker
from prevent.platform.netutil import free_port
from prevent.platform.runtime import ServiceContext, topic_configs
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import FeedState, SeenEntry

from .tcpproxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
BEFORE, DURING, AFTER = 10, 10, 10  # entries published before the outage, gained in it (twice)
# aiokafka's default request timeout is 40 s: each publish to an unreachable broker would take
# that long to fail (3 attempts: 2 minutes per poll). A short one keeps the test bounded.
REQUEST_TIMEOUT_MS = 2000


class Wire:
    """A locally served RSS feed that gains entries over time; its ETag names its size."""

    def __init__(self) -> None:
        self.size = 0
        self.when = format_datetime(utcnow() - timedelta(minutes=5))
        self.server = FeedServer({"/feed": self._route})

    def grow(self, entries: int) -> None:
        self.size += entries

    @property
    def etag(self) -> str:
        return f'"v{self.size}"'

    def _route(self, req: Request) -> Reply:
        etag = self.etag
        if req.headers.get("if-none-match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"Content-Type": "application/rss+xml", "ETag": etag}, self._xml()

    def _xml(self) -> bytes:
        items = "".join(f"<item><guid>wire-{i}</guid><title>Council meeting number {i} held</title>"
                        f"<link>https://wire.example.org/{i}</link><pubDate>{self.when}</pubDate>"
                        f"<description>Item {i}.</description></item>" for i in range(self.size))
        return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Wire</title>'
                f"<link>https://wire.example.org/</link>{items}</channel></rss>").encode()


@pytest.fixture
def wire() -> Iterator[Wire]:
    feed = Wire()
    feed.server.start()
    try:
        yield feed
    finally:
        feed.server.stop()


async def on_topic(bootstrap: str) -> list[tuple[bytes, GlobalIncident]]:
    """Every record on the incidents topic, read from the beginning up to its end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=50,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        # Assigned, not looked up: an unsubscribed consumer's metadata on Apache Kafka lists no
        # partitions of the topic (issue 24, finding 2).
        partitions = [TopicPartition(INCIDENTS.name, p) for p in range(TEST_TOPICS[INCIDENTS.name])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[bytes, GlobalIncident]] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=500)
            found += [(r.key, GlobalIncident.model_validate_json(r.value))
                      for rs in batches.values() for r in rs]
        return found
    finally:
        await consumer.stop()


async def count(db: Database, model: type) -> int:
    async with db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar() or 0)


async def feed_state(db: Database, feed_id: str) -> FeedState:
    async with db.transaction() as session:
        state = await session.get(FeedState, feed_id)
    assert state is not None
    return state


async def _watch_invariant(db: Database, acked: set[str], violations: list[set[str]]) -> None:
    """Every 20 ms: nothing in seen_entries that Kafka has not acknowledged."""
    while True:
        async with db.transaction() as session:
            seen = set((await session.execute(select(SeenEntry.incident_id))).scalars())
        if seen - acked:
            violations.append(seen - acked)
        await asyncio.sleep(0.02)


class Rig:
    """A watcher of one feed that publishes through ``kafka``; records what Kafka acknowledged
    and checks, all along, that nothing is marked seen before that."""

    def __init__(self, watcher: FeedWatcher, feed: FeedConfig, db: Database) -> None:
        self.watcher, self.feed, self.db = watcher, feed, db
        self.acked: set[str] = set()
        self.violations: list[set[str]] = []

    async def poll(self, *, attempts: int, backoff: float) -> PollOutcome:
        self.watcher.publish_attempts, self.watcher.publish_backoff = attempts, backoff
        return await asyncio.wait_for(self.watcher.poll(self.feed.id), 60)


@asynccontextmanager
async def watching(tmp_path: Path, wire: Wire, bootstrap: str) -> AsyncIterator[Rig]:
    settings = Settings(var_dir=tmp_path / "var", secret_key="s", demo=False,
                        allow_private_addresses=True, kafka_bootstrap=bootstrap)
    feed = FeedConfig(id="wire", url=wire.server.url("/feed"), kind="rss", interval_seconds=3600)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'watcher.db'}")
    await db.upgrade()
    kafka = make_broker(settings, bootstrap, client_id="watcher", request_timeout_ms=REQUEST_TIMEOUT_MS)
    await kafka.start()
    publish = incident_publisher(ServiceContext(settings, db, kafka, None, None, "prevent/watcher"))  # type: ignore[arg-type]
    rig: Rig | None = None

    async def publish_and_record(incident: GlobalIncident) -> None:
        await publish(incident)
        assert rig is not None
        rig.acked.add(incident.incident_id)

    monitor: asyncio.Task[None] | None = None
    try:
        async with new_client(settings) as client:
            rig = Rig(FeedWatcher([feed], db, Fetcher.from_settings(client, settings), publish_and_record,
                                  settings=settings), feed, db)
            monitor = asyncio.create_task(_watch_invariant(db, rig.acked, rig.violations))
            yield rig
    finally:
        if monitor is not None:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
        await kafka.stop()
        await db.dispose()


async def assert_publish_failed_and_nothing_moved(rig: Rig, outcome: PollOutcome, *, seen: int,
                                                  etag: str | None) -> None:
    assert outcome.error is not None and outcome.error.startswith("publish"), outcome
    assert len(rig.acked) == seen and await count(rig.db, SeenEntry) == seen
    state = await feed_state(rig.db, rig.feed.id)
    assert state.etag == etag, "validators must not hide the unpublished entries"
    assert state.consecutive_errors == 0, "a broker outage does not count towards disabling"
    assert state.last_error_kind == "publish"


def assert_each_exactly_once(rig: Rig, records: list[tuple[bytes, GlobalIncident]], total: int) -> None:
    assert rig.violations == [], f"entries marked seen before Kafka acknowledged them: {rig.violations[:1]}"
    assert len(rig.acked) == total
    assert {incident.incident_id for _, incident in records} == rig.acked
    assert all(key == incident.incident_id.encode() for key, incident in records)
    assert len(records) == total, "an entry was published more than once"


def advertise_through(proxy: TcpProxy) -> Callable[[object], None]:
    """A ``start_cluster`` hook: the (one) node advertises ``proxy``'s port, and the proxy
    forwards to the node's own."""
    def configure(cluster: object) -> None:
        node = cluster.nodes[0]  # type: ignore[attr-defined]
        proxy.target = ("127.0.0.1", node.port)
        config = Path(node.config)
        own = f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}"
        text = config.read_text()
        assert own in text
        config.write_text(text.replace(own, f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy.port}"))
    return configure


@asynccontextmanager
async def broker_behind(engine: str, proxy: TcpProxy, tmp_path: Path) -> AsyncIterator[None]:
    """A broker reached only through ``proxy`` (started), with every prevent topic."""
    via_proxy = f"127.0.0.1:{proxy.port}"
    if engine == "tansu":
        broker = EmbeddedBroker(topics=TEST_TOPICS, port=proxy.target[1], advertised_port=proxy.port)
        try:
            await broker.astart()
            assert broker.advertised_bootstrap == via_proxy
            yield
        finally:
            await broker.astop()
        return
    cluster = start_cluster(tmp_path / "kafka", 1, configure=advertise_through(proxy))
    try:
        await ensure_topics(via_proxy, TEST_TOPICS, configs=topic_configs(Settings()))
        yield
    finally:
        cluster.stop(graceful=False)


@pytest.mark.parametrize("engine", ENGINES)
async def test_broker_unreachable_nothing_seen_before_published_then_everything_published(
        tmp_path: Path, wire: Wire, engine: str) -> None:
    # The proxy listens before the broker starts: the broker advertises the proxy's address,
    # and creating its topics at start already goes through it.
    proxy = await TcpProxy("127.0.0.1", free_port()).start()
    via_proxy = f"127.0.0.1:{proxy.port}"
    try:
        async with broker_behind(engine, proxy, tmp_path), watching(tmp_path, wire, via_proxy) as rig:
            # The watcher runs and publishes: its producer is connected, with topic metadata.
            wire.grow(BEFORE)
            outcome = await rig.poll(attempts=3, backoff=0.2)
            assert outcome.error is None and outcome.published == BEFORE
            assert await count(rig.db, SeenEntry) == BEFORE

            # The broker becomes unreachable (it keeps running) while the feed gains entries.
            await proxy.cut()
            wire.grow(DURING)
            outcome = await rig.poll(attempts=3, backoff=0.2)
            await assert_publish_failed_and_nothing_moved(rig, outcome, seen=BEFORE, etag=f'"v{BEFORE}"')
            wire.grow(AFTER)  # still unreachable; the feed goes on

            await proxy.restore()
            connections = proxy.connections
            outcome = await rig.poll(attempts=8, backoff=0.5)
            assert outcome.error is None and outcome.published == DURING + AFTER
            assert await count(rig.db, SeenEntry) == BEFORE + DURING + AFTER
            assert (await feed_state(rig.db, rig.feed.id)).etag == wire.etag
            assert proxy.connections > connections, "the producer reconnected through the proxy"

            # Everything is on the topic now; another poll (304) publishes nothing more.
            again = await rig.poll(attempts=3, backoff=0.2)
            assert again.not_modified and again.published == 0
            records = await on_topic(via_proxy)
    finally:
        await proxy.stop()
    print(f"{engine}: {len(records)} records on the topic for {BEFORE + DURING + AFTER} entries "
          f"({len(rig.acked)} acknowledged)")
    assert_each_exactly_once(rig, records, BEFORE + DURING + AFTER)


class Restartable:
    """A broker on a fixed address that can go away and come back: a Tansu process replaced
    by a new one on the same port (memory-only: its topics created anew before it is used,
    as a restarted cluster would have them; a publish retried into a Tansu whose topics did
    not exist yet was reported acknowledged but never readable), or an Apache Kafka node
    SIGKILLed and started again (its log, and so its topics, kept)."""

    def __init__(self, engine: str, tmp_path: Path) -> None:
        self.engine, self.tmp_path = engine, tmp_path
        self.tansu: list[EmbeddedBroker] = []
        self.cluster: object | None = None
        self.bootstrap = ""

    async def start(self) -> str:
        if self.engine == "tansu":
            port = free_port()
            self.tansu.append(await EmbeddedBroker(topics=TEST_TOPICS, port=port).astart())
            self.bootstrap = f"127.0.0.1:{port}"
        else:
            self.cluster = start_cluster(self.tmp_path / "kafka", 1)
            self.bootstrap = self.cluster.bootstrap  # type: ignore[attr-defined]
            await ensure_topics(self.bootstrap, TEST_TOPICS, configs=topic_configs(Settings()))
        return self.bootstrap

    async def go_away(self) -> None:
        if self.engine == "tansu":
            await self.tansu[-1].astop()
        else:
            self.cluster.kill(1)  # type: ignore[attr-defined]

    async def come_back(self) -> None:
        if self.engine == "tansu":
            port = int(self.bootstrap.rsplit(":", 1)[1])
            self.tansu.append(await EmbeddedBroker(topics=TEST_TOPICS, port=port).astart())
        else:
            self.cluster.restart(1, preexec=_pdeathsig_preexec())  # type: ignore[attr-defined]

    async def stop(self) -> None:
        stops: list[Awaitable[None]] = [b.astop() for b in self.tansu]
        await asyncio.gather(*stops)
        if self.cluster is not None:
            self.cluster.stop(graceful=False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("engine", ENGINES)
async def test_broker_restarted_nothing_seen_before_published_then_everything_published(
        tmp_path: Path, wire: Wire, engine: str) -> None:
    broker = Restartable(engine, tmp_path)
    try:
        bootstrap = await broker.start()
        async with watching(tmp_path, wire, bootstrap) as rig:
            wire.grow(BEFORE + DURING)
            await broker.go_away()  # the broker goes away before the watcher published anything

            outcome = await rig.poll(attempts=3, backoff=0.2)
            await assert_publish_failed_and_nothing_moved(rig, outcome, seen=0, etag=None)

            # The broker comes back; the next poll publishes it all.
            await broker.come_back()
            outcome = await rig.poll(attempts=8, backoff=0.5)
            assert outcome.error is None and outcome.published == BEFORE + DURING
            assert await count(rig.db, SeenEntry) == BEFORE + DURING

            again = await rig.poll(attempts=3, backoff=0.2)
            assert again.not_modified and again.published == 0
        # Whatever reached the broker before it went away, each entry appears once now.
        records = await on_topic(bootstrap)
    finally:
        await broker.stop()
    print(f"{engine}: {len(records)} records on the topic for {BEFORE + DURING} entries "
          f"({len(rig.acked)} acknowledged)")
    assert_each_exactly_once(rig, records, BEFORE + DURING)
