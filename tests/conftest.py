"""Shared fixtures: a database on SQLite always and on PostgreSQL when configured."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from fixtures.broker import kafka_bootstrap  # noqa: F401 - re-exported fixture
from sqlalchemy.engine import make_url

from prevent.config import Settings
from prevent.storage.db import Database

PG_URL = os.environ.get("PREVENT_TEST_DATABASE_URL")
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

DB_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="PostgreSQL tests need PREVENT_TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(params=DB_PARAMS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
        schema = None
    else:
        assert PG_URL
        schema = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        database = Database(PG_URL, schema=schema)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()
        if schema:
            conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()


@pytest.fixture(params=DB_PARAMS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database that `prevent` subprocesses can share: a SQLite file, or
    a fresh PostgreSQL database (not a schema like ``db``: services take only
    PREVENT_DATABASE_URL, which cannot carry a search_path). Not migrated."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    assert PG_URL
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
        # FORCE: a SIGKILLed service's connection may not be gone from the server yet.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", secret_key="test-secret-key-not-for-production")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many storage tests ran on PostgreSQL (CI must show them run, not skipped)."""
    ran = sum(1 for report in terminalreporter.stats.get("passed", [])
              if "[postgresql" in report.nodeid)
    failed = sum(1 for report in terminalreporter.stats.get("failed", [])
                 if "[postgresql" in report.nodeid)
    where = PG_URL.rsplit("@", 1)[-1] if PG_URL else "not configured"
    terminalreporter.write_line(f"PostgreSQL-backed tests run against {where}: {ran} ok, {failed} not ok")
    # The exact counts the fault tests print (incidents stored, notices sent once), in CI's output.
    for report in terminalreporter.stats.get("passed", []):
        if "tests/resilience/" in report.nodeid and report.when == "call":
            for line in report.capstdout.splitlines():
                if line.strip():
                    terminalreporter.write_line(f"{report.nodeid.rsplit('::', 1)[-1]}: {line.strip()}")


# Apache Kafka (scripts/kafka-cluster): the session's 1-node cluster and the engine parameter.
from fixtures.kafka import apache_kafka, fresh_topics, kafka_engine, system_engine  # noqa: E402, F401
