"""Shared pieces of the crash-and-fault tests: services as real `prevent` subprocesses on one
embedded broker and one SQLite file, a stream of incidents, an SMTP sink, and the expected
outcome computed by running the same incidents through `prevent.rules.stage.process_batch` on a
fresh database."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from notify.helpers import contact, load_registry, registry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.alerts.audience import resolve_audience
from prevent.classification import Classifier
from prevent.contracts import INCIDENTS, GlobalIncident, Location, cloudevent_headers, stable_id, utcnow
from prevent.platform.config import REPO_ROOT
from prevent.platform.netutil import free_port
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AlertRow, IncidentRow, NoticeRow
from prevent.rules.playbooks import store
from prevent.rules.playbooks.loader import NOT_PLAYBOOKS
from prevent.rules.stage import process_batch

PREVENT = Path(sys.executable).parent / "prevent"
PLAYBOOKS = REPO_ROOT / "playbooks"
COUNTRIES = ("FR", "DE", "ES", "IT", "NL", "BE", "PT", "SE", "NO", "DK",
             "FI", "PL", "AT", "CH", "IE", "GR", "CZ", "HU", "RO", "BG")
CONTACTS = 10


def incidents(total: int, *, events: int = 20, reports: int = 5, seed: int = 0) -> list[GlobalIncident]:
    """``events`` grave attacks (one per country, so never grouped together), each reported
    ``reports`` times, shuffled among quiet local news up to ``total`` incidents."""
    now = utcnow() - timedelta(minutes=10)
    out = [GlobalIncident(
        incident_id=stable_id("inc", f"ev{e}-r{r}"), feed_id=f"wire-{r}", kind="rss",
        title="Gunman kills 12 worshippers in attack on mosque",
        summary="A gunman opened fire in a mosque during prayers, killing 12.",
        location=Location(country=COUNTRIES[e]), published=now, first_seen=now, content_hash="h")
        for e in range(events) for r in range(reports)]
    out += [GlobalIncident(
        incident_id=stable_id("inc", f"quiet-{i}"), feed_id="local", kind="rss",
        title=f"Road resurfacing on Main Street section {i}", summary="Traffic is diverted.",
        published=now, first_seen=now, content_hash="h") for i in range(total - len(out))]
    random.Random(seed).shuffle(out)
    return out


Signature = tuple[frozenset[str], str, str]


async def alert_signatures(session: AsyncSession, alerts: Sequence[AlertRow]) -> Counter[Signature]:
    """What each alert is independent of which report came first (that names the cluster):
    every report of its cluster, its playbook, its status."""
    reports: dict[str, set[str]] = {}
    for incident_id, cluster_id in (await session.execute(
            select(IncidentRow.incident_id, IncidentRow.cluster_id))).all():
        reports.setdefault(cluster_id, set()).add(incident_id)
    return Counter((frozenset(reports.get(a.cluster_id, ())), a.playbook_id, a.status) for a in alerts)


async def prepare(db: Database) -> None:
    """Schema, every playbook and the registry: what the services find on first start."""
    await db.upgrade()
    await load_registry(db, registry([contact(i) for i in range(CONTACTS)], sites=5))
    async with db.transaction() as session:
        await store.apply_sources(session, [(str(p), p.read_text()) for p in sorted(PLAYBOOKS.glob("*.yaml"))
                                            if p.name not in NOT_PLAYBOOKS], author="test")


@dataclass(frozen=True)
class Expected:
    alerts: Counter[Signature]
    notices: int
    incidents: int


async def expected_outcome(items: Sequence[GlobalIncident], tmp_path: Path) -> Expected:
    """The same incidents through the domain on a fresh database, no Kafka, no crash."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}")
    try:
        await prepare(db)
        holder = PlaybookHolder()
        await holder.reload(db)
        async with db.transaction() as session:
            await process_batch(session, items, Classifier.from_dir(PLAYBOOKS), holder.compiled)
        notices = 0
        async with db.transaction() as session:
            rows = list((await session.execute(select(AlertRow))).scalars())
            for row in rows:
                if row.status == "confirmed":
                    from prevent.alerts.states import from_row

                    playbook = await holder.version(db, row.playbook_id, row.playbook_version)
                    plan = await resolve_audience(session, from_row(row), playbook)
                    notices += len([r for r in plan.recipients if r.channel == "email"])
            count = (await session.execute(select(func.count()).select_from(IncidentRow))).scalar()
            signatures = await alert_signatures(session, rows)
        return Expected(signatures, notices, int(count or 0))
    finally:
        await db.dispose()


async def observed(db: Database) -> tuple[Counter[Signature], list[NoticeRow], int]:
    async with db.transaction() as session:
        alerts = list((await session.execute(select(AlertRow))).scalars())
        notices = list((await session.execute(select(NoticeRow))).scalars())
        count = (await session.execute(select(func.count()).select_from(IncidentRow))).scalar()
        signatures = await alert_signatures(session, alerts)
    return signatures, notices, int(count or 0)


class Sink:
    """An SMTP server that keeps every message; ``refuse()``/``accept()`` stop and restart it on
    the same port, so clients get connection refused in between."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.messages: list[Any] = []
        self.port = free_port()
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        return "250 OK"

    def accept(self) -> Sink:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def refuse(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def message_ids(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for m in self.messages)


@dataclass
class Services:
    """`prevent <service>` subprocesses sharing one environment; logs under ``log_dir``."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen([str(PREVENT), command], env=self.env, cwd=self.log_dir,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.processes[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.processes[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def assert_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() not in (None, -9)}
        assert not dead, f"services exited: {dead}"


def service_env(bootstrap: str, db_url: str, smtp_port: int, var_dir: Path, *,
                session_timeout_ms: int = 2000) -> dict[str, str]:
    """The services' environment; ``session_timeout_ms`` the shortest the broker accepts
    (2 s on Tansu, Apache Kafka's group.min.session.timeout.ms, 6 s, there)."""
    return {**os.environ, "PREVENT_KAFKA_BOOTSTRAP": bootstrap, "PREVENT_DATABASE_URL": db_url,
            "PREVENT_SMTP_HOST": "127.0.0.1", "PREVENT_SMTP_PORT": str(smtp_port),
            "PREVENT_SECRET_KEY": "resilience-test-secret", "PREVENT_VAR_DIR": str(var_dir),
            "PREVENT_DEMO": "false", "PREVENT_KAFKA_SESSION_TIMEOUT_MS": str(session_timeout_ms),
            "PREVENT_CHANNEL_RATE_PER_SECOND": '{"email": 200, "sms": 5, "webhook": 10}',
            # A killed notifier's claims lapse in 15 s, not 60 (every send here is over loopback
            # within a 5 s timeout), a survivor looks for lapsed claims every 5 s, not 60, and a
            # notifier tries a relay that was down at least every 3 s, not 60: the same faults,
            # without waiting out production's margins.
            **SHORT_WAITS, "PREVENT_CONFIG_FILE": str(var_dir / "none.toml")}


SHORT_WAITS = {"PREVENT_SMTP_TIMEOUT_SECONDS": "5", "PREVENT_HTTP_TIMEOUT_SECONDS": "5",
               "PREVENT_NOTICE_SEND_LEASE_SECONDS": "15", "PREVENT_SCANNER_INTERVAL_SECONDS": "5",
               "PREVENT_NOTICE_OUTAGE_RETRY_MAX_SECONDS": "3"}


async def produce(bootstrap: str, items: Sequence[GlobalIncident], *, chunk: int = 25,
                  pause: float = 0.2, after_chunk: Callable[[int], Awaitable[None]] | None = None) -> None:
    """Publish ``items`` as the watcher would (key, CloudEvents headers), ``chunk`` at a time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n, start in enumerate(range(0, len(items), chunk)):
            sends = [await producer.send(
                INCIDENTS.name, i.model_dump_json().encode(), key=i.incident_id.encode(),
                headers=[(k, v.encode()) for k, v in cloudevent_headers(
                    INCIDENTS, f"{i.incident_id}:{i.content_hash}", "test").items()])
                for i in items[start:start + chunk]]
            await asyncio.gather(*sends)
            if after_chunk is not None:
                await after_chunk(n)
            await asyncio.sleep(pause)
    finally:
        await producer.stop()


async def wait_until(predicate: Callable[[], Awaitable[bool]], limit: float, what: str,
                     alive: Callable[[], None] | None = None) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not await predicate():
        if alive is not None:
            alive()
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {limit:g}s waiting for {what}")
        await asyncio.sleep(0.2)


async def start_rules_and_centre(services: Services) -> None:
    """`prevent rules` and `prevent centre-notifier`, returning once both are running."""
    services.start("rules", "rules")
    services.start("centre", "centre-notifier")

    async def running() -> bool:
        return all("prevent is running" in services.log(n) for n in ("rules", "centre"))

    await wait_until(running, 60, "the services to start", services.assert_alive)
