"""Assembling a service process: settings, database, Kafka broker, outbox relay.

Each service (rules consumer, notifiers, console, watcher) registers its
subscribers on the process's one FastStream broker; ``prevent up`` registers all
of them in one process, the production commands one each. Either way, stages
talk only through Kafka.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker

from prevent.contracts import DEADLETTER, TOPICS, cloudevent_headers
from prevent.platform.config import Settings
from prevent.platform.messaging import make_broker, settings_for_broker
from prevent.platform.storage.db import Database
from prevent.platform.storage.outbox import OutboxRelay, Sender
from prevent.platform.yamlsource import SourceError, parse_model
from prevent.rules.playbooks import store
from prevent.rules.playbooks.evaluate import CompiledSet
from prevent.rules.playbooks.loader import PlaybookSet
from prevent.rules.playbooks.schema import Playbook

log = logging.getLogger("prevent.platform.runtime")
TOPICS_BY_NAME = {t.name: t for t in TOPICS}


# Young objects per collection: a batch of incidents allocates hundreds of thousands of
# short-lived objects, and at the default (700) the collector runs thousands of times a burst.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> tuple[int, int, int]:
    """Once a process has started: move what start-up built (lexicon, playbooks, SQLAlchemy,
    FastStream) out of the collector's sight, and collect young objects less often. Full
    collections then scan only what the work allocates, not the whole long-lived heap.
    Returns the thresholds it replaced."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    return thresholds


@contextmanager
def settled_heap() -> Iterator[None]:
    """``settle_heap`` for a service; undone on exit, so a process that starts services
    again (tests) frees what it froze."""
    thresholds = settle_heap()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def topic_partitions(settings: Settings) -> dict[str, int]:
    single = {"prevent.playbooks.v1", "prevent.audit.v1", "prevent.deadletter.v1"}
    return {t.name: 1 if t.name in single else settings.kafka_partitions for t in TOPICS}


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The topic configuration every topic is created with (``ensure_topics``), so that
    nothing depends on the cluster's defaults (docs/OPERATIONS.md, "Topics"):

    * ``max.message.bytes``: the producers' limit (8 MiB) on the event topics, so that an
      oversized input still reaches its consumer and is dead-lettered rather than refused
      to its producer; ``kafka_deadletter_max_bytes`` (2 MiB) on the dead-letter topic, whose
      payloads are cut to fit;
    * ``retention.ms``: 7 days, 30 days for dead letters;
    * ``min.insync.replicas``: min(2, replication factor), added by ``ensure_topics``.
    """
    events = {"retention.ms": str(settings.kafka_retention_ms),
              "max.message.bytes": str(settings.kafka_max_request_bytes)}
    configs = {t.name: dict(events) for t in TOPICS}
    configs[DEADLETTER.name] = {"retention.ms": str(settings.kafka_deadletter_retention_ms),
                                "max.message.bytes": str(settings.kafka_deadletter_max_bytes)}
    return configs


@dataclass
class PlaybookHolder:
    """The playbook set in force; swapped whole, so a reader never sees half a reload."""

    compiled: CompiledSet = field(default_factory=lambda: CompiledSet(PlaybookSet(())))
    _by_version: dict[tuple[str, int], Playbook] = field(default_factory=dict)

    async def reload(self, db: Database) -> None:
        try:
            async with db.transaction() as session:
                playbooks = await store.current_set(session)
        except SourceError as exc:  # stored versions were validated; keep the last good set
            log.error("playbook reload failed, keeping the previous set: %s", exc)
            return
        self.compiled = CompiledSet(playbooks)
        log.info("playbooks in force: %s", dict(playbooks.versions))

    async def version(self, db: Database, playbook_id: str, version: int) -> Playbook:
        """The exact playbook version an alert was raised under (notifiers follow it)."""
        key = (playbook_id, version)
        if key not in self._by_version:
            async with db.transaction() as session:
                row = await store.get_version(session, playbook_id, version)
            if row is None:
                current = self.compiled.source.get(playbook_id)
                if current is None:
                    raise LookupError(f"playbook {playbook_id} v{version} is not stored")
                return current
            self._by_version[key] = parse_model(Playbook, row.source, f"{playbook_id}@v{version}")
        return self._by_version[key]


@dataclass
class ServiceContext:
    settings: Settings
    db: Database
    broker: KafkaBroker
    relay: OutboxRelay
    playbooks: PlaybookHolder
    source: str
    # Run first on shutdown, while the broker still runs (a consumer finishing its batch).
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # "tansu" (keeps records in memory only: a crash loses what it held) or "kafka".
    engine: str = "kafka"


def outbox_sender(broker: KafkaBroker, source: str) -> Sender:
    async def send(topic: str, key: str, event_id: str, subtype: str | None, payload: str,
                   extra: dict[str, str]) -> Awaitable[object]:
        headers = cloudevent_headers(TOPICS_BY_NAME[topic], event_id, source, subtype) | extra
        # no_confirm: the producer's future is returned, for the relay to await with the batch's
        return await broker.publish(payload.encode(), topic=topic, key=key.encode(),
                                    headers=headers, no_confirm=True)
    return send


@asynccontextmanager
async def service_context(settings: Settings, bootstrap: str, *, name: str
                          ) -> AsyncIterator[ServiceContext]:
    """Open the database (schema upgraded) and build the broker; the caller registers
    subscribers, then calls ``start_services``. ``ctx.settings`` has the Kafka defaults
    the operator left unset chosen by what the cluster supports (``settings_for_broker``)."""
    settings, features = await settings_for_broker(settings, bootstrap)
    db = Database(settings.effective_database_url)
    await db.upgrade()
    broker = make_broker(settings, bootstrap, client_id=name)
    relay = OutboxRelay(db, outbox_sender(broker, f"prevent/{name}"))
    holder = PlaybookHolder()
    ctx = ServiceContext(settings, db, broker, relay, holder, f"prevent/{name}",
                         engine=features.engine)
    try:
        yield ctx
    finally:
        for stop in reversed(ctx.on_stop):
            await stop()
        await relay.stop()
        await broker.stop()
        await db.dispose()


async def start_broker(broker: KafkaBroker) -> None:
    """``broker.start()``, but joining the consumer groups concurrently.

    FastStream starts subscribers one after another, and each consumer's first
    group join takes seconds (about 5 s on the embedded broker), so a process with
    four subscribers would need 20 s to start; joined together it needs one.
    """
    await broker.connect()
    await asyncio.gather(*(sub.start() for sub in broker.subscribers))
    for pub in broker.publishers:
        await pub.start()
    broker.running = True


async def start_services(ctx: ServiceContext) -> None:
    await ctx.playbooks.reload(ctx.db)
    await start_broker(ctx.broker)
    ctx.relay.start()
    ctx.relay.kick()
