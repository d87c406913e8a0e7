"""Builders shared by the notifier tests: a registry, the playbook, alerts, SMTP and HTTP
servers that answer what a test scripts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import update

from notifiers.centre import CentreNotifier, RetryPolicy
from notifiers.channels.email import EmailChannel
from notifiers.channels.sms import SmsChannel
from notifiers.channels.webhook import WebhookChannel
from prevent.contracts import Alert, AlertStatus, utcnow
from prevent.notices.templates import NoticeRenderer
from prevent.partners.acklinks import AckLinks
from prevent.partners.registry import ContactIn, RegistryIn, SiteIn, ZoneIn, apply_registry
from prevent.platform.config import REPO_ROOT, Settings
from prevent.platform.netutil import free_port
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import NoticeRow
from prevent.platform.yamlsource import parse_model
from prevent.rules.playbooks.schema import Playbook

PLAYBOOK_FILE = REPO_ROOT / "playbooks" / "place-of-worship-attack.yaml"
CAP_XSD = Path(__file__).resolve().parents[3] / "shared/data/cap/CAP-v1.2.xsd"


def playbook() -> Playbook:
    return parse_model(Playbook, PLAYBOOK_FILE.read_text(), str(PLAYBOOK_FILE))


def alert(*, status: AlertStatus = AlertStatus.CONFIRMED, revision: int = 2, severity: int = 3,
          previous_severity: int | None = None, exercise: bool = False, alert_id: str = "alr_test",
          at: datetime | None = None) -> Alert:
    now = at or utcnow()
    return Alert(alert_id=alert_id, cluster_id="cls_test", incident_ids=("inc_test",),
                 playbook_id="place-of-worship-attack", playbook_version=1, status=status,
                 revision=revision, severity=severity, previous_severity=previous_severity,
                 communities=("muslim",), incident_type="armed_attack",
                 title="Gunman attacks mosque during prayers", created_at=now, updated_at=now,
                 exercise=exercise)


def contact(i: int, *, channels: Iterable[str] = ("email",), language: str = "en",
            webhook_url: str | None = None, webhook_format: str = "json") -> ContactIn:
    return ContactIn(contact_id=f"contact-{i:03d}", name=f"Sample Person {i}", role="admin",
                     email=f"person{i}@centre{i}.example.org", phone=f"+1 555 01{i:02d}",
                     webhook_url=webhook_url, webhook_format=webhook_format,  # type: ignore[arg-type]
                     language=language, channels=list(channels), consent=True)  # type: ignore[arg-type]


def registry(contacts: list[ContactIn], *, sites: int = 1) -> RegistryIn:
    """``contacts`` spread round-robin over ``sites`` mosque sites in zone-test."""
    site_list = [SiteIn(site_id=f"site-{s:03d}", name=f"Sample Mosque {s}", communities=["muslim"],
                        municipality="Riverside", lat=45.42 + s / 1000, lon=-75.70, zone_id="zone-test",
                        floor_plan_ref=f"FP-{s:03d}", contacts=[]) for s in range(sites)]
    for i, c in enumerate(contacts):
        site_list[i % sites].contacts.append(c)
    return RegistryIn(zones=[ZoneIn(zone_id="zone-test", name="Test zone")], sites=site_list)


async def load_registry(db: Database, reg: RegistryIn) -> None:
    async with db.transaction() as session:
        await apply_registry(session, reg)


async def settle(n: CentreNotifier, rounds: int = 30) -> int:
    """Make every scheduled retry due now and run it, as the scanner does when the due times
    come, until none is left; returns how many notices were sent."""
    sent = 0
    for _ in range(rounds):
        later = utcnow() + timedelta(hours=1)
        due = await n.due(later)
        if not due:
            return sent
        sent += await n.deliver_many(due, later)
    raise AssertionError(f"notices still due after {rounds} rounds")


async def lapse_claims_of_the_dead(db: Database) -> int:
    """What the database holds once a killed notifier's send leases have run out, without
    waiting them out in wall-clock time (``RetryPolicy.lease``: 60 s, not configurable): every
    notice left ``sending`` falls due now. Only for a moment when no notifier process runs, so
    that every such claim is the dead one's; the notifier started next then takes them up as
    interrupted sends ("resending notice"), exactly as it would a lease later. Returns how
    many claims lapsed."""
    async with db.transaction() as session:
        result = await session.execute(
            update(NoticeRow).where(NoticeRow.state == "sending").values(next_attempt_at=utcnow())
            .execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]


def notifier(db: Database, settings: Settings, *, retry: RetryPolicy | None = None,
             officer_email: str | None = None) -> CentreNotifier:
    channels = {"email": EmailChannel(settings), "webhook": WebhookChannel(settings),
                "sms": SmsChannel(settings)}
    return CentreNotifier(db, NoticeRenderer(settings.playbooks_dir / "templates"), channels,
                          AckLinks.from_settings(settings),
                          retry or RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
                          cap_sender=settings.mail_from, officer_email=officer_email)


# ------------------------------------------------------------------ SMTP


@dataclass
class ScriptedSmtp:
    """An SMTP server whose DATA replies follow a script ("250", "451 ...", "drop"); then 250."""

    script: list[str] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str | None:
        self.attempts += 1
        reply = self.script.pop(0) if self.script else "250 OK"
        if reply == "drop":
            server.transport.close()
            return "421 closing"
        if reply.startswith("250"):
            self.received.append(message_from_bytes(envelope.content, policy=default_policy))
        return reply

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.received]

    def __enter__(self) -> ScriptedSmtp:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


# ------------------------------------------------------------------ HTTP


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedHttp:
    """A local HTTP receiver: replies follow ``script`` (status codes), then 200;
    a path ``/status/NNN`` always answers NNN; a path ``/hang`` answers nothing until the
    receiver stops (a partner's server that times out)."""

    def __init__(self, script: Iterable[int] = ()) -> None:
        self.script = list(script)
        self.received: list[Received] = []
        self.hung: list[Received] = []  # requests to /hang, never answered in time
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/hang"):
                    outer.hung.append(Received(self.path, dict(self.headers.items()), body))
                    outer.released.wait(60)
                    return
                outer.received.append(Received(self.path, dict(self.headers.items()), body))
                if self.path.startswith("/status/"):
                    status = int(self.path.rsplit("/", 1)[-1])
                else:
                    status = outer.script.pop(0) if outer.script else 200
                reply = b'{"id": "gw-1"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ScriptedHttp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def ago(**kwargs: float) -> datetime:
    return utcnow() - timedelta(**kwargs)
