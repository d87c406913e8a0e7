"""Helpers for lifecycle tests: a database with the playbooks and the sample registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from prevent.alerts import lifecycle
from prevent.contracts import Alert, AlertStatus, alert_id_for, stable_id, utcnow
from prevent.notices.channel import OutgoingNotice, SendResult
from prevent.partners.registry import apply_registry, parse_registry
from prevent.platform.config import REPO_ROOT
from prevent.platform.demo import SAMPLE_PARTNERS
from prevent.platform.storage.db import Database
from prevent.rules.playbooks import store
from prevent.users import Principal, Role

PLAYBOOK = "place-of-worship-attack"
INSPECTOR = Principal("insp.ada", Role.DUTY_INSPECTOR)
INSPECTOR_2 = Principal("insp.bo", Role.DUTY_INSPECTOR)
VIEWER = Principal("view.cy", Role.VIEWER)
OFFICER = Principal("eo.dee", Role.ENGAGEMENT_OFFICER)


@pytest.fixture
async def seeded(db: Database) -> AsyncIterator[Database]:
    async with db.transaction() as session:
        await store.apply_directory(session, REPO_ROOT / "playbooks", author="test")
        await apply_registry(session, parse_registry(SAMPLE_PARTNERS))
    yield db


def make_alert(*, cluster: str = "c1", playbook: str = PLAYBOOK, version: int = 1,
               communities: tuple[str, ...] = ("muslim",), severity: int = 2,
               status: AlertStatus = AlertStatus.PROPOSED, exercise: bool = False,
               at: datetime | None = None, title: str = "Arson attack on mosque") -> Alert:
    at = at or utcnow()
    cluster_id = stable_id("clu", cluster)
    return Alert(alert_id=alert_id_for(cluster_id, playbook), cluster_id=cluster_id,
                 incident_ids=(f"inc-{cluster}",), playbook_id=playbook, playbook_version=version,
                 status=status, revision=1, severity=severity, communities=communities,
                 incident_type="arson", title=title, exercise=exercise,
                 decided_by="rules-consumer" if status is AlertStatus.CONFIRMED else None,
                 created_at=at, updated_at=at)


async def open_alert(db: Database, alert: Alert, *, text: str | None = None,
                     published: datetime | None = None, now: datetime | None = None) -> Alert | None:
    """Raise ``alert`` the way the rules stage does (silences, inhibition, timers)."""
    async with db.transaction() as session:
        playbooks = await store.current_set(session)
        playbook = playbooks.get(alert.playbook_id)
        assert playbook is not None
        return await lifecycle.open_alert(
            session, alert, playbook, incident_id=alert.incident_ids[0],
            text=text if text is not None else alert.title,
            published=published or alert.created_at,
            priority_of=lambda pid: getattr(playbooks.get(pid), "priority", 0),
            now=now or alert.created_at, actor="rules-consumer")


@dataclass
class FakeChannel:
    """An email channel that records what it was asked to send."""

    name: str = "email"
    sent: list[OutgoingNotice] = field(default_factory=list)

    async def send(self, notice: OutgoingNotice) -> SendResult:
        self.sent.append(notice)
        return SendResult.sent(notice.notice_id)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
