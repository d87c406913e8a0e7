"""The database: one async engine per process, sessions, and schema upgrades via alembic."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from prevent.platform.storage.dialect import dialect_name, is_sqlite

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
if TYPE_CHECKING:
    from prevent.platform.config import Settings

log = logging.getLogger("prevent.platform.storage")


# Pages the WAL may hold before a commit copies them into the database itself. At SQLite's
# default (1000 pages, 4 MB) every rules batch (about 10 MB) paid for that copy and its fsync
# inside its commit: about 45 ms, against 5-10 ms without. The heavy writer asks for the copy
# in the background instead (``Database.checkpoint_soon``); this is the bound if nobody does.
WAL_AUTOCHECKPOINT_PAGES = 16_384


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets the console read while a consumer writes; busy_timeout makes
    # concurrent writers from several service processes wait instead of failing.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


DIR_MODE = 0o700
FILE_MODE = 0o600


def private_sqlite_file(path: Path) -> None:
    """The database holds contact details, password hashes and second factors: its folder is
    0700 and the file 0600, created so before SQLite opens it (no moment it is readable by
    others). SQLite gives the ``-wal`` and ``-shm`` files the database file's mode; any that
    already exist, and an existing database, are tightened too."""
    folder = path.parent
    if not folder.exists():
        old = os.umask(0o077)
        try:
            folder.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        finally:
            os.umask(old)
    st = folder.stat()
    if st.st_uid == os.getuid() and not st.st_mode & stat.S_ISVTX:
        os.chmod(folder, DIR_MODE)
    elif st.st_mode & 0o077:  # a shared folder such as /tmp: not ours to close
        log.warning("the database folder %s is open to other users: give the database a "
                    "folder of its own", folder)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    os.close(fd)
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                 path.with_name(path.name + "-journal")):
        if file.exists():
            os.chmod(file, FILE_MODE)


class JsonText(str):
    """A JSON column's value already encoded (by pydantic, or in another process): stored
    as it is instead of being encoded again."""


def _json_dumps(value: object) -> str:
    # JSON columns (incident payloads, classifications, alerts) are written thousands of
    # times per batch; orjson is several times faster than the standard library here.
    if type(value) is JsonText:
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


class Database:
    """Owns the engine; ``session()`` yields a session whose ``begin()`` commits or rolls back."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        """``schema`` (PostgreSQL only) isolates a test run in its own schema."""
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1].split("?", 1)[0]
            if path and path != ":memory:":
                private_sqlite_file(Path(path))
        connect_args = {"server_settings": {"search_path": schema}} if schema else {}
        # Hundreds of feeds polled at once each touch the database briefly: a pool
        # sized for bursts, and a long wait rather than a failed poll when it is full.
        pool = {} if ":memory:" in url else {"pool_size": 10, "max_overflow": 40, "pool_timeout": 120}
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True, connect_args=connect_args,
                                                       json_serializer=_json_dumps,
                                                       json_deserializer=orjson.loads, **pool)
        if is_sqlite(self.engine):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._checkpoint: asyncio.Task[None] | None = None

    @property
    def dialect(self) -> str:
        return dialect_name(self.engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session, session.begin():
            yield session

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (safe to call on every start)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_upgrade)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    def checkpoint_soon(self) -> None:
        """SQLite file: copy the WAL into the database on a connection of its own, without
        blocking writers (a PASSIVE checkpoint), unless one is under way. Elsewhere nothing."""
        if not is_sqlite(self.engine) or ":memory:" in self.url:
            return
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = asyncio.create_task(self.checkpoint(), name="sqlite-checkpoint")

    async def checkpoint(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # noqa: BLE001 - a later one (or the autocheckpoint) catches up
            log.warning("background checkpoint of the SQLite WAL failed: %s", exc)

    async def dispose(self) -> None:
        if self._checkpoint is not None and not self._checkpoint.done():
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        await self.engine.dispose()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _run_upgrade(sync_conn: object) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def run_sync_upgrade(url: str) -> None:
    """For the CLI: ``prevent db upgrade``."""
    db = Database(url)

    async def go() -> None:
        try:
            await db.upgrade()
        finally:
            await db.dispose()

    asyncio.run(go())


__all__ = ["Database", "Engine", "alembic_config", "run_sync_upgrade"]


@asynccontextmanager
async def open_db(settings: Settings) -> AsyncIterator[Database]:
    """The configured database, migrated, disposed of on exit (the commands' one connection)."""
    db = Database(settings.effective_database_url)
    await db.upgrade()
    try:
        yield db
    finally:
        await db.dispose()
