"""Tables. Every side effect of the pipeline has a row here keyed by a deterministic id,
so a redelivered message finds its effect already done instead of doing it twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from prevent.platform.storage.dialect import is_sqlite


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if is_sqlite(dialect) else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # SQLAlchemy reads this once, when the registry is made; never mutated (RUF012)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[str]: JSON}  # noqa: RUF012

    if TYPE_CHECKING:
        # Every mapped class here is declared on one Table, not on another FromClause (the
        # type DeclarativeBase gives it): say so to the type checker, nothing at run time.
        __table__: ClassVar[Table]


class FeedState(Base):
    """Per-feed fetch state: conditional-GET validators, health and backoff."""

    __tablename__ = "feed_state"

    feed_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    last_success_at: Mapped[datetime | None]
    last_error_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    next_poll_at: Mapped[datetime | None]
    items_emitted: Mapped[int] = mapped_column(Integer, default=0)
    fetches: Mapped[int] = mapped_column(Integer, default=0)
    not_modified: Mapped[int] = mapped_column(Integer, default=0)
    bytes_fetched: Mapped[int] = mapped_column(Integer, default=0)
    last_duration_ms: Mapped[float | None] = mapped_column(Float)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    last_error_kind: Mapped[str | None] = mapped_column(String(30))  # timeout, http_5xx, parse, ...
    last_status: Mapped[int | None] = mapped_column(Integer)
    disabled_at: Mapped[datetime | None]


class SeenEntry(Base):
    """An entry the watcher has published (the broker acknowledged it); the content hash
    detects updates."""

    __tablename__ = "seen_entries"

    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    feed_id: Mapped[str] = mapped_column(String(100), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
    # On a memory-only broker (Tansu): the incident as published (JSON), kept until the rules
    # stage stored that version, so that a crash, which takes the broker's records with it,
    # loses nothing (FeedWatcher.replay_unstored). NULL otherwise.
    payload: Mapped[str | None] = mapped_column(Text)


class WebSubSubscription(Base):
    """A WebSub (PubSubHubbub) subscription of one feed: secret, state and lease.

    ``callback_id`` is the random path segment of the callback URL, so a push names its
    subscription without revealing the feed; ``pending_mode`` is the request awaiting the
    hub's verification (only then is a challenge echoed).
    """

    __tablename__ = "websub_subscriptions"

    feed_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    callback_id: Mapped[str] = mapped_column(String(64), unique=True)
    hub_url: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(20))  # pending | active | denied | failed
    pending_mode: Mapped[str | None] = mapped_column(String(20))  # subscribe | unsubscribe
    lease_seconds: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[datetime]
    verified_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    last_push_at: Mapped[datetime | None]
    pushes: Mapped[int] = mapped_column(Integer, default=0)
    # A push received by a console without the watcher: the watcher polls the feed soon.
    push_pending_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class ThreatLevelState(Base):
    """The last national threat level a ``threat_level`` feed showed (changes are events)."""

    __tablename__ = "threat_levels"

    feed_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[str] = mapped_column(String(100))
    observed_at: Mapped[datetime]  # first time this level was seen
    checked_at: Mapped[datetime]


class IncidentRow(Base):
    """Every incident version the rules consumer has processed (its idempotency record)."""

    __tablename__ = "incidents"

    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    feed_id: Mapped[str] = mapped_column(String(100))
    cluster_id: Mapped[str | None] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(index=True)
    received_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]]
    classification: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AlertRow(Base):
    """The current state of an alert; ``revision`` is the optimistic-concurrency version."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("cluster_id", "playbook_id"),)

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(64))
    playbook_id: Mapped[str] = mapped_column(String(100), index=True)
    playbook_version: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), index=True)
    severity: Mapped[int]
    revision: Mapped[int]
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]


class Zone(Base):
    __tablename__ = "zones"

    zone_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    dispatch_email: Mapped[str | None] = mapped_column(String(320))


class Site(Base):
    __tablename__ = "sites"

    site_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(50))
    communities: Mapped[list[str]]
    address: Mapped[str] = mapped_column(Text, default="")
    municipality: Mapped[str] = mapped_column(String(200), index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    zone_id: Mapped[str | None] = mapped_column(String(100))
    floor_plan_ref: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str] = mapped_column(Text, default="")
    # ISO 3166 countries and diaspora-map region ids the site serves (migration 0010).
    diasporas: Mapped[list[str]] = mapped_column(default=list, server_default="[]")


class Contact(Base):
    """A partner contact: only what is needed to reach them (data minimisation)."""

    __tablename__ = "contacts"

    contact_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_format: Mapped[str] = mapped_column(String(10), default="json")  # json | cap
    language: Mapped[str] = mapped_column(String(5), default="en")
    channels: Mapped[list[str]]
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the contact last set their own language, channels or opt-out (through a notice's
    # link). A registry import keeps those choices: the officer's sheet must not re-subscribe
    # someone who opted out.
    own_choice_at: Mapped[datetime | None] = mapped_column(default=None)


class NoticeRow(Base):
    """One notice to one contact on one channel. Written before sending (queued)."""

    __tablename__ = "notices"

    notice_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    alert_revision: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))
    site_id: Mapped[str] = mapped_column(String(100))
    contact_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(5))
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_via: Mapped[str | None] = mapped_column(String(20))  # link | sms
    # Short code an SMS recipient replies with ("ACK 123456"); derived from the notice id.
    ack_code: Mapped[str | None] = mapped_column(String(8), index=True)
    provider_ref: Mapped[str | None] = mapped_column(String(200), index=True)  # delivery receipts
    cap_xml: Mapped[str | None] = mapped_column(Text)  # the notice as a CAP 1.2 document
    # queued: when the next attempt is due (a scheduled retry); sending: when the claim of the
    # send under way lapses (an interrupted send is then taken up again). Migration 0007.
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    # Retryable refusals by the receiving side so far: counted against the retry limit.
    refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PatrolVisitRow(Base):
    """A patrol visit an officer recorded as done; id from (assignment, visited_at) or a client key."""

    __tablename__ = "patrol_visits"

    visit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    assignment_id: Mapped[str] = mapped_column(String(64), index=True)
    visited_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime]


class PatrolRow(Base):
    __tablename__ = "patrols"

    assignment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    site_id: Mapped[str] = mapped_column(String(100))
    zone_id: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AuditRow(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_subject_at", "subject", "at"),)

    audit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)


class PlaybookVersion(Base):
    __tablename__ = "playbook_versions"

    playbook_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class DiasporaVersion(Base):
    """A stored version of the diaspora map (``playbooks/diaspora.yaml`` is seed and export):
    the newest is in force; a rollback stores an earlier text again as a new version."""

    __tablename__ = "diaspora_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class OutboxRow(Base):
    """Events staged in the same transaction as the state they describe (transactional outbox).

    A relay publishes them in ``seq`` order and stamps ``published_at``; a crash between
    the two republishes, which consumers absorb because every event id is deterministic.
    """

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    subtype: Mapped[str | None] = mapped_column(String(50))
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None] = mapped_column(index=True)


# ------------------------------------------------------------------ lifecycle (issue 5)


class RosterEntry(Base):
    """Duty roster for escalation: who is told, at which level, when nobody decides.

    Only a name and a work email: what an escalation notice needs, nothing more.
    """

    __tablename__ = "duty_roster"
    __table_args__ = (UniqueConstraint("level", "position"),)

    entry_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[int]
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))


class EscalationTimer(Base):
    """A persisted due time: escalate (level >= 1) or expire (level 0) an undecided alert.

    ``timer_id`` is hash(alert, kind, level); the scanner claims a row by moving it
    ``due → firing`` with a compare-and-set, so a restart or a second scanner neither
    loses nor duplicates it.
    """

    __tablename__ = "escalation_timers"
    __table_args__ = (Index("ix_escalation_state_due", "state", "due_at"),)

    timer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # escalate | expire
    level: Mapped[int]
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(20))  # due | firing | fired | moot | failed
    roster_entry_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    fired_at: Mapped[datetime | None]


class SilenceRow(Base):
    """A duty inspector's silence: matching alerts are recorded but not proposed."""

    __tablename__ = "silences"

    silence_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    matchers: Mapped[dict[str, Any]]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    comment: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expired_by: Mapped[str | None] = mapped_column(String(100))


class SuppressedMatch(Base):
    """A playbook match that was not proposed because a silence or an inhibition applied."""

    __tablename__ = "suppressed_matches"

    match_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    incident_id: Mapped[str] = mapped_column(String(64))
    cluster_id: Mapped[str] = mapped_column(String(64))
    playbook_id: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(20))  # silenced | inhibited
    by: Mapped[str] = mapped_column(String(64))  # silence id or inhibiting alert id
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(index=True)
    # The alert that would have been raised, on the match that records it first (in a batch
    # of the rules stage, or a single raise); the later ones are the same alert with another
    # report, and are left without it.
    payload: Mapped[dict[str, Any] | None]


class UserRow(Base):
    """A console/API user. Only an argon2 hash of the password is stored."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(30))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The TOTP secret (pyotp base32) when a second factor is enrolled, required for admins;
    # stored encrypted ("fernet:" + token, key derived from the secret key: prevent.users).
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    # The time step of the last code accepted: a code is good once (no replay in its window).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class ConsoleSessionRow(Base):
    """A signed-in browser session. Only the SHA-256 of the cookie's random id is stored,
    so a copy of the table cannot be replayed; the CSRF token lives here (synchronizer)."""

    __tablename__ = "console_sessions"

    session_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(100), index=True)
    csrf_token: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    """An API bearer token; only its SHA-256 is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ClusterRow(Base):
    """An incident cluster: reports of one event from different feeds."""

    __tablename__ = "clusters"

    cluster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    first_published_at: Mapped[datetime] = mapped_column(index=True)
    last_published_at: Mapped[datetime] = mapped_column(index=True)
    title: Mapped[str] = mapped_column(Text)
    communities: Mapped[list[str]]
    incident_type: Mapped[str] = mapped_column(String(50))
    country: Mapped[str | None] = mapped_column(String(2))
    tokens: Mapped[list[str]]
    max_severity: Mapped[int]
    report_count: Mapped[int]


class ClusterKey(Base):
    """Index of a cluster's distinctive words (and its country/type shape) for grouping:
    finding candidate clusters is one indexed lookup, not a scan of every open cluster."""

    __tablename__ = "cluster_keys"
    __table_args__ = (Index("ix_cluster_keys_key_last", "key", "last_published_at"),)

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_published_at: Mapped[datetime]

