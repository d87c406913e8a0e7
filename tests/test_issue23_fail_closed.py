"""Issue 23 outside the console: services fail closed (point 2), the demo password is never
logged, the database is private from creation (M3), `config show` masks credentials in URLs
and the SSRF guard refuses IPv6 forms of internal IPv4 addresses (L12)."""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from prevent.cli.main import app
from prevent.contracts import utcnow
from prevent.platform.config import Settings, get_settings
from prevent.platform.netguard import is_forbidden
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import UserRow

runner = CliRunner()


@pytest.fixture
def no_kafka(monkeypatch, tmp_path: Path):
    for name in list(os.environ):
        if name.startswith("PREVENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PREVENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PREVENT_CONFIG_FILE", str(tmp_path / "none.toml"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("command", ["rules", "watcher", "centre-notifier", "patrol-notifier",
                                     "console"])
def test_services_refuse_to_start_without_a_kafka_cluster(command: str, no_kafka, monkeypatch,
                                                          tmp_path: Path) -> None:
    import prevent.cli.services

    started: list[str] = []

    async def must_not_run(*args, **kwargs) -> None:
        started.append(command)

    monkeypatch.setattr(prevent.cli.services, "run_until_stopped", must_not_run)
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: started.append(command))
    result = runner.invoke(app, [command])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "PREVENT_KAFKA_BOOTSTRAP" in lines[0], result.output
    assert started == []  # no embedded broker, no service, no console
    assert not (tmp_path / "var").exists()  # nothing created either (no database, no demo data)


def test_services_never_run_in_demo_mode(monkeypatch, no_kafka) -> None:
    import prevent.cli.services

    seen: list[Settings] = []

    async def record(settings: Settings, names: tuple[str, ...]) -> None:
        seen.append(settings)

    monkeypatch.setattr(prevent.cli.services, "run_until_stopped", record)
    monkeypatch.setenv("PREVENT_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("PREVENT_DEMO", "true")
    get_settings.cache_clear()
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0, result.output
    assert [s.demo for s in seen] == [False]


async def test_the_demo_password_is_printed_once_and_never_logged(settings: Settings, caplog,
                                                                  capsys) -> None:
    from prevent.cli.services import _demo_user

    db = Database(settings.effective_database_url)
    await db.upgrade()
    try:
        with caplog.at_level(logging.DEBUG):
            async with db.transaction() as session:
                await _demo_user(session, settings)
            async with db.transaction() as session:
                await _demo_user(session, settings)  # a user exists now: nothing again
                assert (await session.execute(select(func.count()).select_from(UserRow))
                        ).scalar() == 1
    finally:
        await db.dispose()
    printed = capsys.readouterr().err
    assert printed.count("with password") == 1
    password = printed.split("with password '", 1)[1].split("'", 1)[0]
    assert len(password) >= 12
    assert password not in caplog.text
    assert all(password not in str(r.args) for r in caplog.records)


async def test_the_database_is_private_from_creation(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "state"
    db = Database(f"sqlite+aiosqlite:///{folder / 'prevent.db'}")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "prevent.db").stat().st_mode) == 0o600  # before SQLite opened it
    await db.upgrade()
    async with db.transaction() as session:
        session.add(UserRow(name="someone", role="viewer", password_hash="x", created_at=utcnow(),
                            disabled=False))
    try:
        files = sorted(p.name for p in folder.iterdir())
        assert {"prevent.db", "prevent.db-wal", "prevent.db-shm"} <= set(files)
        for name in files:
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    finally:
        await db.dispose()


def test_an_existing_database_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir(mode=0o755)
    (folder / "prevent.db").touch(mode=0o644)
    os.chmod(folder / "prevent.db", 0o644)
    Database(f"sqlite+aiosqlite:///{folder / 'prevent.db'}")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "prevent.db").stat().st_mode) == 0o600


def test_config_show_masks_credentials_inside_urls(monkeypatch, no_kafka) -> None:
    monkeypatch.setenv("PREVENT_SMS_GATEWAY_URL",
                       "https://sms.example/send?api_key=k3y-v4lue&sender=PREVENT&token=t0k3n")
    monkeypatch.setenv("PREVENT_PUBLIC_BASE_URL", "https://user:pa55@console.example/")
    get_settings.cache_clear()
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    for secret in ("k3y-v4lue", "t0k3n", "pa55"):
        assert secret not in result.output
    assert "api_key=********" in result.output and "sender=PREVENT" in result.output


@pytest.mark.parametrize("address", [
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254 (cloud metadata)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
])
def test_ipv6_forms_of_internal_ipv4_addresses_are_refused(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address))


def test_6to4_of_a_public_address_is_still_public() -> None:
    assert not is_forbidden(ipaddress.ip_address("2002:808:808::1"))  # 8.8.8.8
