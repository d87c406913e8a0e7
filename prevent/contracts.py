"""Event contracts: every message that crosses Kafka, and the topics that carry them.

One module on purpose: producers and consumers import the same models, so a
change to a contract is a change in one place, reviewed once. Every model
carries ``schema_version``; a consumer that meets a version it does not know
dead-letters the message instead of guessing.

Messages are JSON (pydantic ``model_dump_json``) with CloudEvents binary-mode
headers (``ce_specversion``, ``ce_id``, ``ce_source``, ``ce_type``, ``ce_time``,
``content-type``). Keys are the entity id, so every event about one entity
lands on one partition, in order.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic id: the same parts always give the same id (idempotency keys)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:24]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def in_utc(value: datetime) -> datetime:
    """The same instant in UTC, with ``datetime.UTC`` itself as its zone: times from events,
    the database and the clock then compare and subtract directly (across two zone objects
    each comparison asks both for their offsets: about 0.2 µs, dozens per report grouped)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


# An aware time, in UTC from the moment it is validated.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(in_utc)]


def _web_url(value: str) -> str:
    """Only a web address: "javascript:", "data:" or "file:" links never reach a page."""
    if not value.lower().startswith(("http://", "https://")) or any(c in value for c in "\r\n\t "):
        raise ValueError("an incident's url must be an http or https address")
    return value


WebUrl = Annotated[str, AfterValidator(_web_url)]


class Contract(BaseModel):
    """Base of every event: strict about unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


# --------------------------------------------------------------------------- incidents


class FeedKind(StrEnum):
    RSS = "rss"
    ATOM = "atom"
    RDF = "rdf"
    CAP = "cap"
    GEOJSON = "geojson"
    THREAT_LEVEL = "threat_level"
    PARTNER_REPORT = "partner_report"


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2, upper case")
    place: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class CapInfo(BaseModel):
    """The CAP 1.2 fields that matter for severity, when the source is CAP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identifier: str | None = None
    msg_type: str | None = None
    event: str | None = None
    severity: str | None = None  # Extreme | Severe | Moderate | Minor | Unknown
    urgency: str | None = None
    certainty: str | None = None
    area: str | None = None


class ThreatLevelChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    previous: str | None
    current: str


class GlobalIncident(Contract):
    """One report of something that happened somewhere, normalized from a feed entry."""

    incident_id: str
    feed_id: str
    kind: FeedKind
    title: str = Field(min_length=1, max_length=1000)
    summary: str = Field(default="", max_length=10_000)
    url: WebUrl | None = None
    published: UtcDatetime
    first_seen: UtcDatetime
    language: str | None = Field(default=None, description="the item's language (ISO 639-1) as the "
                                 "language identifier decided it, the feed's declared one as its prior")
    trust_weight: float = Field(default=1.0, ge=0, le=10)
    location: Location | None = None
    cap: CapInfo | None = None
    threat_level: ThreatLevelChange | None = None
    categories: tuple[str, ...] = ()
    content_hash: str = Field(description="changes when the entry's content changes (updates)")
    exercise: bool = False


# --------------------------------------------------------------------------- alerts


class AlertStatus(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    EXPIRED = "expired"
    CLOSED = "closed"


class Evidence(BaseModel):
    """Why something matched: the words, where they were, and which rule used them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str  # e.g. "community:muslim", "type:armed_attack", "casualties"
    term: str
    field: Literal["title", "summary"] = "title"
    start: int = 0
    end: int = 0


class Scope(BaseModel):
    """What a confirming inspector removed from the proposed response."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    excluded_sites: tuple[str, ...] = ()
    excluded_channels: tuple[str, ...] = ()
    excluded_patrol_sites: tuple[str, ...] = ()


class Alert(Contract):
    """A playbook matched an incident cluster. Published on every change of state."""

    alert_id: str
    cluster_id: str
    incident_ids: tuple[str, ...] = Field(
        description="the first reports attached, at most 100; every report of the event is "
                    "in its cluster")
    playbook_id: str
    playbook_version: int
    status: AlertStatus
    revision: int = Field(ge=1, description="bumps on every change; consumers key effects on it")
    severity: int = Field(ge=0, le=4)
    previous_severity: int | None = None
    communities: tuple[str, ...]
    incident_type: str
    title: str
    summary: str = ""
    country: str | None = None
    evidence: tuple[Evidence, ...] = ()
    scope: Scope = Scope()
    auto_confirmed: bool = False
    exercise: bool = False
    decided_by: str | None = None
    note: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


@functools.lru_cache(maxsize=16_384)  # asked for every report that matches a playbook
def alert_id_for(cluster_id: str, playbook_id: str) -> str:
    return stable_id("alr", cluster_id, playbook_id)


# --------------------------------------------------------------------------- notices


class NoticeKind(StrEnum):
    INITIAL = "initial"
    UPDATE = "update"
    ALL_CLEAR = "all_clear"
    # Messages to the engagement officer, sent through the same pipeline:
    ACK_FOLLOWUP = "ack_followup"  # high-priority notices not acknowledged in time
    STAND_DOWN_REVIEW = "stand_down_review"  # a patrol plan is about to end


class NoticeState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    ACKNOWLEDGED = "acknowledged"


class Notice(Contract):
    """The state of one notice to one partner contact on one channel.

    Carries ids only, never contact details: Kafka is not the place for personal data.
    """

    notice_id: str
    alert_id: str
    alert_revision: int
    site_id: str
    contact_id: str
    channel: str
    kind: NoticeKind
    state: NoticeState
    language: str = "en"
    exercise: bool = False
    error: str | None = None
    at: UtcDatetime


def notice_id_for(alert_id: str, kind: NoticeKind, revision: int, contact_id: str, channel: str) -> str:
    # An initial notice is keyed without the revision: a redelivered or
    # re-published confirmation never yields a second first notice.
    rev = 0 if kind is NoticeKind.INITIAL else revision
    return stable_id("ntc", alert_id, kind.value, rev, contact_id, channel)


# --------------------------------------------------------------------------- patrols


class PatrolStatus(StrEnum):
    ASSIGNED = "assigned"
    CANCELLED = "cancelled"


class PatrolAssignment(Contract):
    assignment_id: str
    alert_id: str
    site_id: str
    site_name: str
    zone: str
    status: PatrolStatus
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    every_minutes: int = Field(gt=0)
    priority: Literal["low", "normal", "high", "critical"] = "normal"
    instructions: str = ""
    floor_plan_ref: str | None = None
    lat: float | None = None
    lon: float | None = None
    exercise: bool = False
    at: UtcDatetime


def assignment_id_for(alert_id: str, site_id: str) -> str:
    return stable_id("ptl", alert_id, site_id)


# --------------------------------------------------------------------------- playbooks, audit


class PlaybooksChanged(Contract):
    """The stored playbook set or the stored diaspora map changed; rules consumers reload
    both from the database (``diaspora_version``: set when the map is what changed)."""

    versions: dict[str, int]
    actor: str
    at: UtcDatetime
    diaspora_version: int | None = None


class AuditEvent(Contract):
    audit_id: str
    actor: str
    action: str
    subject: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str | None = None
    at: UtcDatetime


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    name: str
    model: type[Contract] | None
    key: str
    event_type: str
    description: str


INCIDENTS = Topic("prevent.incidents.v1", GlobalIncident, "incident_id", "prevent.incident",
                  "Normalized global incidents from the feed watchers and partner reports.")
ALERTS = Topic("prevent.alerts.v1", Alert, "alert_id", "prevent.alert",
               "Every state of every alert: proposed, confirmed, dismissed, expired, closed.")
NOTICES = Topic("prevent.notices.v1", Notice, "notice_id", "prevent.notice",
                "Notice delivery states and acknowledgements.")
PATROLS = Topic("prevent.patrols.v1", PatrolAssignment, "assignment_id", "prevent.patrol",
                "Patrol assignments for dispatch and in-car systems.")
PLAYBOOKS = Topic("prevent.playbooks.v1", PlaybooksChanged, "'playbooks'", "prevent.rules.playbooks",
                  "A new playbook set was stored; rules consumers swap to it.")
AUDIT = Topic("prevent.audit.v1", AuditEvent, "subject", "prevent.audit",
              "Append-only audit trail of decisions, imports and reloads.")
DEADLETTER = Topic("prevent.deadletter.v1", None, "original key", "prevent.deadletter",
                   "Messages that can never be processed, with origin and error headers.")

TOPICS: tuple[Topic, ...] = (INCIDENTS, ALERTS, NOTICES, PATROLS, PLAYBOOKS, AUDIT, DEADLETTER)


def cloudevent_headers(topic: Topic, event_id: str, source: str, subtype: str | None = None,
                       time: datetime | None = None) -> dict[str, str]:
    """CloudEvents 1.0 binary-mode headers for one message."""
    ce_type = f"{topic.event_type}.{subtype}" if subtype else topic.event_type
    return {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": source,
        "ce_type": ce_type,
        "ce_time": (time or utcnow()).isoformat(),
        "content-type": "application/json",
    }
