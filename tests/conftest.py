"""Shared fixtures: a database on SQLite always and on PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from fixtures.broker import kafka_bootstrap  # noqa: F401 - re-exported fixture
from fixtures.properties import hypothesis_profile  # importing it loads the profile
from sqlalchemy.engine import make_url

from prevent.platform.config import Settings
from prevent.platform.storage.db import Database

PG_URL = os.environ.get("PREVENT_TEST_DATABASE_URL")
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

DB_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


HEAVY_GROUPS = ("e2e-a", "e2e-b")


def _heavy(item: pytest.Item) -> bool:
    """An end-to-end or fault test (marked e2e), or one that drives Chromium (a browser each)."""
    return "e2e" in item.keywords or item.path.name.endswith("_browser.py")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The end-to-end and fault tests (services as processes, brokers, outages; marked e2e) and the
    # browser tests take from seconds to over a minute each and load the machine, so under
    # pytest-xdist (`make test`, --dist loadgroup) they run in two groups, each on one worker, and
    # start first; the other workers run the quick tests meanwhile. Four of them at once on
    # 2 cores once made timing-sensitive tests fail (a load average of 11).
    items.sort(key=lambda item: not _heavy(item))  # stable: the order within each stays
    heavy = [item for item in items if _heavy(item)]
    for n, item in enumerate(heavy):
        item.add_marker(pytest.mark.xdist_group(HEAVY_GROUPS[n % len(HEAVY_GROUPS)]))
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="PostgreSQL tests need PREVENT_TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


class MigratedTemplates:
    """The migrations run once per session, into a template; every ``db`` is a copy of it.

    Running alembic for each of the suite's several hundred database tests cost 0.4-0.9 s a
    test. A copy is as fresh and as private as a migrated database of its own: a SQLite file
    copied from the migrated template file, or a PostgreSQL database created with
    ``CREATE DATABASE ... TEMPLATE`` from a migrated template database (about 0.1 s). Nothing a
    test does reaches the template or another test's copy. Each template is built on first use
    (a run without PostgreSQL tests builds none) and the PostgreSQL one is dropped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sqlite: Path | None = None
        self._postgresql: str | None = None
        self._to_drop: list[str] = []  # every template database made, migrated or not

    async def sqlite_copy(self, target: Path) -> str:
        if self._sqlite is None:
            template = self.folder / f"template-{uuid.uuid4().hex[:12]}.db"  # a failed one is not reused
            database = Database(f"sqlite+aiosqlite:///{template}")
            try:
                await database.upgrade()
            finally:
                await database.dispose()
            # The last connection closed folds the WAL into the file: the file is the whole database.
            assert not template.with_name(template.name + "-wal").exists()
            self._sqlite = template
        shutil.copyfile(self._sqlite, target)
        return f"sqlite+aiosqlite:///{target}"

    async def postgresql_copy(self, name: str) -> str:
        assert PG_URL
        if self._postgresql is None:
            template = f"tmpl_{uuid.uuid4().hex[:12]}"
            conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
            try:
                await conn.execute(f'CREATE DATABASE "{template}"')
            finally:
                await conn.close()
            self._to_drop.append(template)
            database = Database(_pg_database_url(template))
            try:
                await database.upgrade()
            finally:
                await database.dispose()  # a template must have no connection while it is copied
            self._postgresql = template  # only once migrated: a failure fails each test that asks
        conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._postgresql}"')
        finally:
            await conn.close()
        return _pg_database_url(name)

    def close(self) -> None:
        if not self._to_drop:
            return
        templates, self._to_drop, self._postgresql = self._to_drop, [], None

        async def drop_all() -> None:
            for template in templates:
                await _drop_database(template)

        # The session's event loops are gone by now: drop them from a loop of its own.
        errors: list[BaseException] = []
        thread = threading.Thread(target=_run_collecting, args=(drop_all(), errors))
        thread.start()
        thread.join()
        if errors:
            raise errors[0]


def _pg_database_url(name: str) -> str:
    assert PG_URL
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


async def _drop_database(name: str) -> None:
    assert PG_URL
    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
    try:
        # FORCE: a connection a test left open may not be gone from the server yet.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _run_collecting(coroutine: object, errors: list[BaseException]) -> None:
    try:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
        errors.append(exc)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("migrated-template"))
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture(params=DB_PARAMS)
async def db(request: pytest.FixtureRequest, tmp_path: Path,
             migrated_templates: MigratedTemplates) -> AsyncIterator[Database]:
    """A migrated, empty database of the test's own: a SQLite file, or a fresh PostgreSQL
    database; either a copy of the session's migrated template (``MigratedTemplates``)."""
    if request.param == "sqlite":
        database = Database(await migrated_templates.sqlite_copy(tmp_path / "test.db"))
        name = None
    else:
        name = f"t_{uuid.uuid4().hex[:12]}"
        database = Database(await migrated_templates.postgresql_copy(name))
    try:
        yield database
    finally:
        await database.dispose()
        if name:
            await _drop_database(name)


@pytest.fixture(params=DB_PARAMS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database that `prevent` subprocesses can share: a SQLite file, or
    a fresh PostgreSQL database. Not migrated (unlike ``db``)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    assert PG_URL
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL))
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield _pg_database_url(name)
    finally:
        await _drop_database(name)  # FORCE: a SIGKILLed service's connection may linger


@pytest.fixture(scope="session", autouse=True)
def cheap_argon2() -> Iterator[None]:
    """argon2id at its lowest cost for the test process's password hashes and checks.

    The product's hasher (``prevent.users._hasher``, argon2's defaults: 3 passes over 64 MiB,
    4 lanes) costs 0.25-0.9 s of CPU per hash or check on purpose; the console fixture alone
    hashes three passwords for each of its ~240 tests and every sign-in checks one. The code
    path is unchanged (argon2id hashes, checked in a thread, a decoy for unknown names); only
    the cost parameters differ, and a check reads them from the stored hash. Services the
    tests start as subprocesses keep the product's parameters."""
    from argon2 import PasswordHasher

    from prevent import users

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        users._decoy_hash.cache_clear()  # a decoy made with the product's cost would cost it again
        yield
        users._decoy_hash.cache_clear()


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
    terminalreporter.write_line(f"hypothesis profile: {hypothesis_profile()} (HYPOTHESIS_PROFILE=thorough "
                                "for every property's full number of examples)")
    # The exact counts the fault tests print (incidents stored, notices sent once), in CI's output.
    for report in terminalreporter.stats.get("passed", []):
        if "tests/resilience/" in report.nodeid and report.when == "call":
            for line in report.capstdout.splitlines():
                if line.strip():
                    terminalreporter.write_line(f"{report.nodeid.rsplit('::', 1)[-1]}: {line.strip()}")


# Apache Kafka (scripts/kafka-cluster): the session's 1-node cluster and the engine parameter.
from fixtures.kafka import apache_kafka, fresh_topics, kafka_engine, system_engine  # noqa: E402, F401
