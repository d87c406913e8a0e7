"""Configuration: ``PREVENT_*`` environment variables, then an optional ``prevent.toml``.

Everything has a default that runs the all-in-one demo on this machine; production
overrides the few settings that point at real infrastructure. Secrets are
``SecretStr`` so they never print (``prevent config show`` masks them).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


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
        description="consumer fetch wait; the embedded broker answers only when it expires")
    kafka_session_timeout_ms: int | None = Field(
        default=None, ge=1000,
        description="consumer session timeout; unset = 2000 on the embedded broker (its first "
                    "group join waits half of it), 10000 on Apache Kafka (which rejects < 6000)")
    kafka_idempotent_producer: bool = Field(
        default=False, description="enable on Apache Kafka; the embedded broker lacks it")
    kafka_client_id: str = "prevent"

    # --- data
    playbooks_dir: Path = REPO_ROOT / "playbooks"
    feeds_file: Path | None = Field(default=None, description="feeds.yaml; unset = demo feed")
    allow_private_addresses: bool = Field(
        default=False, description="let feeds/webhooks reach loopback and private networks")

    # --- smtp
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "prevent@example.org"

    # --- web
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = Field(
        default=None, description="signs acknowledgement links; unset = generated under var_dir")

    # --- demo
    demo: bool = Field(default=True, description="serve the bundled demo feed and SMTP sink")
    demo_feed_port: int = 8001

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

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'prevent.db'}"

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value and "@" in value:
                scheme, rest = value.split("://", 1)
                creds, host = rest.rsplit("@", 1)
                user = creds.split(":", 1)[0]
                value = f"{scheme}://{user}:********@{host}" if ":" in creds else value
            out[name] = str(value) if isinstance(value, Path) else value
        out["database_url"] = out["database_url"] or self.effective_database_url
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
