"""The send lease and the outage retry bound are settings (PREVENT_NOTICE_SEND_LEASE_SECONDS,
PREVENT_NOTICE_OUTAGE_RETRY_MAX_SECONDS) that reach the centre notifier; a lease too short to
outlast one send is refused at start, naming both settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from notifiers.assembly import build_centre_notifier
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(var_dir=tmp_path / "var", secret_key="test-secret-key-not-for-production", **values)


def test_the_notifier_takes_its_lease_and_outage_bound_from_the_settings(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    default = build_centre_notifier(_settings(tmp_path), db).retry
    assert (default.lease, default.outage_max_delay) == (timedelta(seconds=60), 60.0)
    short = build_centre_notifier(_settings(
        tmp_path, smtp_timeout_seconds=5, http_timeout_seconds=5, notice_send_lease_seconds=15,
        notice_outage_retry_max_seconds=3), db).retry
    assert (short.lease, short.outage_max_delay) == (timedelta(seconds=15), 3.0)


@pytest.mark.parametrize("values", [
    {"notice_send_lease_seconds": 20},  # the default SMTP and HTTP timeouts are 10 s
    {"notice_send_lease_seconds": 60, "http_timeout_seconds": 25},
])
def test_a_lease_shorter_than_three_send_timeouts_is_refused(tmp_path: Path,
                                                             values: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match=r"notice_send_lease_seconds .* at least three times"):
        _settings(tmp_path, **values)


def test_the_lease_is_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREVENT_NOTICE_SEND_LEASE_SECONDS", "90")
    assert _settings(tmp_path).notice_send_lease_seconds == 90
