"""Running the services: all in one process (`prevent up`) or one per process (production).

In both shapes the stages talk only through Kafka; `up` simply registers every
stage's subscribers on one broker connection in one process.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notifiers.assembly import build_centre_notifier, demo_http_channels
from notifiers.centre import CentreNotifier
from notifiers.channels.email import EmailChannel
from notifiers.scanner import Scanner
from notifiers.service import register_centre, register_patrol
from prevent.alerts.escalation import EscalationScheduler, Escalator
from prevent.classification import Classifier
from prevent.contracts import INCIDENTS, FeedKind, GlobalIncident
from prevent.feeds.catalog import FeedConfig, load_feeds
from prevent.feeds.fetch import Fetcher, new_client
from prevent.feeds.watcher import FeedWatcher
from prevent.feeds.websub import WebSub
from prevent.partners.registry import apply_registry, parse_registry
from prevent.platform.broker import EmbeddedBroker, ensure_topics
from prevent.platform.config import Settings
from prevent.platform.demo import SAMPLE_PARTNERS, DemoFeedServer, SmtpSink
from prevent.platform.demo.httpsink import HttpSink
from prevent.platform.messaging import publish
from prevent.platform.runtime import (
    ServiceContext,
    service_context,
    settled_heap,
    start_services,
    topic_configs,
    topic_partitions,
)
from prevent.platform.storage.tables import Contact, Site, UserRow
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.rules.playbooks import store
from prevent.users import Role, add_user
from prevent.web.app import ConsoleState

log = logging.getLogger("prevent.cli.services")
SERVICES = ("watcher", "rules", "centre-notifier", "patrol-notifier")


@dataclass
class System:
    """What a running process holds, for the console and for tests."""

    ctx: ServiceContext
    bootstrap: str
    sink: SmtpSink | None = None
    feeds: list[FeedConfig] = field(default_factory=list)
    watcher: FeedWatcher | None = None
    http_sink: HttpSink | None = None

    def console_state(self) -> ConsoleState:
        sink, http_sink = self.sink, self.http_sink
        broker = self.ctx.broker

        async def kafka_reachable() -> bool:
            return await broker.ping(timeout=2.0)

        from prevent.web.lag import lag_metrics

        state = ConsoleState(db=self.ctx.db, outbox=(lambda: list(sink.received)) if sink else None,
                            checks={"kafka": kafka_reachable},
                            kick=self.ctx.relay.kick,
                            websub=self.watcher.receive_push if self.watcher else None,
                            settings=self.ctx.settings,
                            http_outbox=(lambda: list(http_sink.received)) if http_sink else None,
                            lag=lag_metrics(self.bootstrap, lambda: [
                                g for sub in broker.subscribers if (g := getattr(sub, "group_id", None))]),
                            bootstrap=self.bootstrap)
        return state


async def resolve_bootstrap(settings: Settings, stack: AsyncExitStack) -> str:
    """The configured cluster (topics ensured), else an embedded broker for this process."""
    topics = topic_partitions(settings)
    if settings.kafka_bootstrap:
        await ensure_topics(settings.kafka_bootstrap, topics, configs=topic_configs(settings))
        return settings.kafka_bootstrap
    broker = await stack.enter_async_context(
        EmbeddedBroker(topics=topics, topic_configs=topic_configs(settings)))
    log.info("embedded Kafka broker (Tansu) on %s", broker.bootstrap)
    return broker.bootstrap


async def seed(ctx: ServiceContext, *, sample_partners: bool, http_sink_url: str | None = None
               ) -> None:
    """First start: store the playbooks from YAML (new ids only) and, in demo mode, the
    fictional sample registry when the registry is empty; the sample webhooks then point at
    the demo HTTP sink where it actually listens."""
    async with ctx.db.transaction() as session:
        stored = {r.playbook_id for r in await store.latest_versions(session)}
        directory = ctx.settings.playbooks_dir
        sources = [(str(p), p.read_text(encoding="utf-8"))
                   for p in sorted(directory.glob("*.yaml")) if _is_playbook(p)]
        new = [(name, text) for name, text in sources if _playbook_id(text) not in stored]
        if new:
            await store.apply_sources(session, new, author="seed", note="seeded from playbooks/")
        if sample_partners and not (await session.execute(select(func.count()).select_from(Site))).scalar():
            await apply_registry(session, parse_registry(SAMPLE_PARTNERS))
        if sample_partners and http_sink_url:
            await point_sample_webhooks(session, http_sink_url)
        if sample_partners:
            await _demo_user(session, ctx.settings)
    await _seed_diaspora(ctx)


async def _seed_diaspora(ctx: ServiceContext) -> None:
    """Version 1 of the diaspora map, if none is stored. Services starting together (two
    rules replicas) may both try: the loser's insert hits the version's primary key, and a
    second look finds the map the winner stored."""
    for attempt in (1, 2):
        try:
            async with ctx.db.transaction() as session:
                await diaspora.seed(session, ctx.settings.playbooks_dir)
            return
        except IntegrityError:
            if attempt == 2:
                raise
            log.info("diaspora map seeded by another service at the same moment; reading theirs")


SAMPLE_WEBHOOK = re.compile(r"^http://127\.0\.0\.1:\d+(/webhook/.*)$")


async def point_sample_webhooks(session: AsyncSession, sink_url: str) -> int:
    """Demo only: loopback ``/webhook/...`` URLs are the sample contacts' webhooks into the
    demo HTTP sink; point them at the port the sink listens on this time (it moves when the
    configured one is taken), so a notice recorded "sent" was received. Returns how many."""
    moved = 0
    for contact in (await session.execute(select(Contact).where(
            Contact.webhook_url.like("http://127.0.0.1:%/webhook/%")))).scalars():
        match = SAMPLE_WEBHOOK.match(contact.webhook_url or "")
        if match and contact.webhook_url != sink_url + match.group(1):
            contact.webhook_url = sink_url + match.group(1)
            moved += 1
    return moved


DEMO_USER = "demo"


async def _demo_user(session: AsyncSession, settings: Settings) -> None:
    """Demo mode with no users yet: one duty inspector with a fresh random password, shown
    once on the terminal, so a new user can sign in right away. Never outside demo mode."""
    if (await session.execute(select(func.count()).select_from(UserRow))).scalar():
        return
    password = secrets.token_urlsafe(12)
    await add_user(session, DEMO_USER, Role.DUTY_INSPECTOR, password, actor="demo-seed")
    # On the terminal only, once: a log line would keep the password wherever logs are kept.
    log.warning("DEMO MODE: a demo user '%s' (duty inspector) was created; its password is "
                "printed on the terminal", DEMO_USER)
    print(f"DEMO MODE: sign in at {settings.public_base_url} as '{DEMO_USER}' with password "
          f"'{password}' (shown once)", file=sys.stderr, flush=True)


def _is_playbook(path: Path) -> bool:
    from prevent.rules.playbooks.loader import NOT_PLAYBOOKS

    return path.name not in NOT_PLAYBOOKS


def _playbook_id(text: str) -> str | None:
    import yaml

    data = yaml.safe_load(text)
    return data.get("id") if isinstance(data, dict) else None


def register_services(ctx: ServiceContext, names: tuple[str, ...], *,
                      stored_map: diaspora.InForce | None = None) -> CentreNotifier | None:
    """``stored_map``: the diaspora map stored in the database (``diaspora.in_force``), which
    the rules stage classifies with in place of the file's."""
    from consumers import rules

    if "rules" in names:
        files = Classifier.from_dir(ctx.settings.playbooks_dir)
        stored_map = stored_map or diaspora.InForce(None, None)
        classifier = diaspora.classifier_for(files.lexicon, stored_map, current=files)
        if classifier is None:  # the stored map does not validate (logged): the file's
            classifier, stored_map = files, diaspora.InForce(None, None)
        if ctx.settings.rules_workers == 0:
            # Items are classified in this process: every language's automaton and the
            # gazetteer now, not on the first item in each. With a worker, the worker warms
            # its own; this copy compiles a language only if the worker fails and a batch is
            # prepared here (a warmed classifier holds about 130 MB).
            classifier.warm()
        rules.register(ctx, classifier, diaspora_version=stored_map.version, files=files.lexicon)
    notifier = None
    if "centre-notifier" in names:
        notifier = build_centre_notifier(ctx.settings, ctx.db)
        register_centre(ctx, notifier)
    if "patrol-notifier" in names:
        register_patrol(ctx)
    return notifier


def incident_publisher(ctx: ServiceContext) -> Callable[[GlobalIncident], Awaitable[None]]:
    async def publish_incident(incident: GlobalIncident) -> None:
        await publish(ctx.broker, INCIDENTS, incident, key=incident.incident_id,
                      event_id=f"{incident.incident_id}:{incident.content_hash}", source=ctx.source)
    return publish_incident


@asynccontextmanager
async def running_system(settings: Settings, *, services: tuple[str, ...] = SERVICES,
                         demo: bool | None = None, feeds: list[FeedConfig] | None = None,
                         name: str = "up") -> AsyncIterator[System]:
    """Start the embedded broker (unless configured), the database and the chosen services."""
    demo = settings.demo if demo is None else demo
    async with AsyncExitStack() as stack:
        bootstrap = await resolve_bootstrap(settings, stack)
        sink = None
        smtp_configured = {"smtp_host", "smtp_port"} & settings.model_fields_set
        if demo and "centre-notifier" in services and not smtp_configured:
            sink = SmtpSink().start()
            stack.callback(sink.stop)
            settings = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port})
        http_sink = None
        if demo and "centre-notifier" in services:
            settings, http_sink = demo_http_channels(settings, stack)
            # The sink moves when its port is taken: everything pointing at it must follow
            # (the notifier's trusted origin, the sample contacts' webhook URLs in seed).
            settings = settings.model_copy(update={"demo_http_sink_port": http_sink.port})
        if feeds is None:
            feeds = _configured_feeds(settings, stack, demo)
        ctx = await stack.enter_async_context(service_context(settings, bootstrap, name=name))
        await seed(ctx, sample_partners=demo, http_sink_url=http_sink.url if http_sink else None)
        stored_map = await diaspora.in_force(ctx.db) if "rules" in services else None
        notifier = register_services(ctx, services, stored_map=stored_map)
        await start_services(ctx)
        if notifier is not None:
            scanner = Scanner(settings, ctx.db, notifier, ctx.playbooks, ctx.relay.kick)
            scanner.start()
            stack.push_async_callback(scanner.stop)
        system = System(ctx, bootstrap, sink, feeds, http_sink=http_sink)
        if "rules" in services:  # the escalation/expiry scanner runs with the rules stage
            escalator = escalation_scheduler(ctx)
            escalator.start()
            stack.push_async_callback(escalator.stop)
        if "watcher" in services and feeds:
            system.watcher = await start_watcher(ctx, settings, feeds, stack, demo=demo)
        stack.enter_context(settled_heap())
        log.info("prevent is running: services %s on Kafka %s", ", ".join(services), bootstrap)
        yield system


async def start_watcher(ctx: ServiceContext, settings: Settings, feeds: list[FeedConfig],
                        stack: AsyncExitStack, *, demo: bool) -> FeedWatcher:
    """The watcher on one shared, SSRF-guarded client; WebSub pushes arrive via the console."""
    if demo and not settings.feeds_file:
        # Demo feeds are served on loopback; real feeds (a feeds file) stay guarded.
        settings = settings.model_copy(update={"allow_private_addresses": True})
    client = await stack.enter_async_context(new_client(settings))
    feeds_file = settings.feeds_file
    reload = (lambda: load_feeds(feeds_file)) if feeds_file else None
    watcher = FeedWatcher(feeds, ctx.db, Fetcher.from_settings(client, settings),
                          incident_publisher(ctx), settings=settings,
                          websub=WebSub(ctx.db, client, settings), reload=reload,
                          # Tansu keeps records in memory only: what it acknowledged but the
                          # rules stage had not stored when the process died is published
                          # again at start (docs/OPERATIONS.md, "A crash of `prevent up`").
                          replay_unstored=ctx.engine == "tansu")
    await watcher.start()
    stack.push_async_callback(watcher.aclose)  # stops polling and writes pending feed state
    return watcher


def _configured_feeds(settings: Settings, stack: AsyncExitStack, demo: bool) -> list[FeedConfig]:
    if settings.feeds_file:
        return load_feeds(settings.feeds_file)
    if not demo:
        return []
    server = DemoFeedServer().start()
    stack.callback(server.stop)
    return [FeedConfig(id="demo-world-news", url=server.url, kind=FeedKind.RSS, interval_seconds=30,
                       language="en")]


async def run_until_stopped(settings: Settings, services: tuple[str, ...]) -> None:
    """Production shape: one or more services in this process until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_system(settings, services=services, name="-".join(services)):
        await stop.wait()


def escalation_scheduler(ctx: ServiceContext) -> EscalationScheduler:
    """The scanner for a service process: mail through the project's email channel."""
    escalator = Escalator(ctx.db, EmailChannel(ctx.settings), console_url=ctx.settings.public_base_url,
                          kick=ctx.relay.kick, time_zone=ctx.settings.time_zone)
    return EscalationScheduler(escalator, ctx.settings.escalation_scan_seconds)
