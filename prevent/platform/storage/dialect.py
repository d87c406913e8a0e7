"""Every difference between SQLite and PostgreSQL that the code depends on, in one place.

The application runs on SQLite (one node, the default) and on PostgreSQL (several
replicas). Outside the migrations, code that needs SQL one of them lacks, or that must act
differently on one of them, asks here instead of comparing dialect names itself:

- ``is_sqlite`` / ``is_postgresql``: which database a session, engine, connection or dialect
  talks to (``dialect_name`` gives the name itself).
- ``insert``, ``insert_ignore``, ``insert_if_absent`` and ``upsert``: ``INSERT ... ON CONFLICT
  DO NOTHING`` and ``... DO UPDATE``, which SQLAlchemy's generic ``insert`` lacks; both
  dialects spell them alike, but each through its own ``Insert`` construct.
- ``greatest``: the larger of two values (``max`` with two arguments on SQLite).
- ``in_values``: ``column IN (thousands of strings)`` as one bound parameter.
- ``advisory_xact_lock`` and ``write_lock``: serialising transactions across processes.

A database other than these two (none is supported) gets SQLite's ``INSERT`` construct and
no advisory lock, as the code did before these helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import String, any_, bindparam, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as _pg_insert
from sqlalchemy.dialects.sqlite import insert as _sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement, SQLCoreOperations

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

# The dialects' own INSERT constructs: the same ``on_conflict_*`` and ``excluded`` API.
Insert = Any
# What the helpers accept to learn the dialect: a session (sync or async), an engine or a
# connection (sync or async), or the dialect itself.
Bind = Any


def dialect_of(bind: Bind) -> Dialect:
    """The dialect of a session (its bind), engine, connection, or the dialect itself."""
    if isinstance(bind, Dialect):
        return bind
    if isinstance(bind, AsyncSession | Session):
        bind = bind.bind
    return bind.dialect  # type: ignore[no-any-return]


def dialect_name(bind: Bind) -> str:
    """``"sqlite"``, ``"postgresql"``, ...: SQLAlchemy's name for the dialect."""
    return dialect_of(bind).name


def is_sqlite(bind: Bind) -> bool:
    return dialect_of(bind).name == SQLITE


def is_postgresql(bind: Bind) -> bool:
    return dialect_of(bind).name == POSTGRESQL


def insert(bind: Bind, table: Any) -> Insert:
    """``INSERT INTO table`` in the dialect's own construct, which has ``on_conflict_do_nothing``,
    ``on_conflict_do_update`` and ``excluded`` (PostgreSQL's, else SQLite's)."""
    return (_pg_insert if is_postgresql(bind) else _sqlite_insert)(table)


def insert_ignore(bind: Bind, table: Any, keys: Sequence[str]) -> Insert:
    """``INSERT INTO table ... ON CONFLICT (keys) DO NOTHING``: a row whose ``keys`` exist is
    skipped, silently. Add ``.values(...)``, or execute it with a list of rows."""
    return insert(bind, table).on_conflict_do_nothing(index_elements=list(keys))


async def insert_if_absent(session: AsyncSession, table: Any, values: Mapping[str, Any],
                           keys: Sequence[str]) -> bool:
    """Insert one row unless a row with its ``keys`` exists; True if this call inserted it."""
    result = await session.execute(insert_ignore(session, table, keys).values(**values))
    # An INSERT gives a CursorResult, but Session.execute is typed as returning a Result
    rowcount: int = result.rowcount  # type: ignore[attr-defined]
    return rowcount == 1


def upsert(bind: Bind, table: Any, keys: Sequence[str],
           set_: Callable[[Any], Mapping[str, Any]]) -> Insert:
    """``INSERT INTO table ... ON CONFLICT (keys) DO UPDATE SET ...``. ``set_`` is given the
    row that was refused (``excluded``: its columns by name) and returns the columns to
    update, by name, with their new values (``excluded.col`` for the refused row's value, the
    table's column for the stored one)."""
    stmt = insert(bind, table)
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=dict(set_(stmt.excluded)))


def greatest(bind: Bind, *values: Any) -> ColumnElement[Any]:
    """The largest of the values: ``greatest`` on PostgreSQL, ``max`` with several arguments
    (a scalar function, not the aggregate) on SQLite. A NULL among them gives NULL on SQLite
    and is ignored on PostgreSQL."""
    return (func.greatest if is_postgresql(bind) else func.max)(*values)


def in_values(bind: Bind, column: SQLCoreOperations[Any],
              values: Sequence[str]) -> ColumnElement[bool]:
    """``column`` is one of the (string) ``values``, the list bound as one parameter: a JSON
    array unpacked by ``json_each`` on SQLite, an array compared with ``= ANY`` on PostgreSQL,
    an ordinary ``IN`` elsewhere. The caller removes repeats (``membership.one_of`` does)."""
    name = dialect_name(bind)
    if name == SQLITE:
        listed = bindparam(None, orjson.dumps(list(values)).decode(), type_=String)
        return column.in_(select(literal_column("value")).select_from(func.json_each(listed)))
    if name == POSTGRESQL:
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    return column.in_(list(values))


async def advisory_xact_lock(session: AsyncSession, key: int | str) -> bool:
    """PostgreSQL: wait for the transaction-level advisory lock ``key`` (an integer, or a text
    hashed by ``hashtext``), held until the transaction ends; True. Elsewhere nothing; False
    (SQLite: one process writes at a time anyway, see ``write_lock``)."""
    if not is_postgresql(session):
        return False
    if isinstance(key, str):
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
    else:
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    return True


async def write_lock(session: AsyncSession, key: int | str, *, table: str, column: str) -> None:
    """Serialise the transactions that call this with the same ``key``, before they read,
    until the transaction ends. SQLite: a statement that writes nothing (``UPDATE table SET
    column = column WHERE 0``) takes the database's write lock, for every writer; PostgreSQL:
    the advisory lock ``key`` (``advisory_xact_lock``). Elsewhere nothing."""
    if is_sqlite(session):
        # Names from the code, never from input: the statement is fixed text.
        await session.execute(text(f"UPDATE {table} SET {column} = {column} WHERE 0"))  # noqa: S608
    else:
        await advisory_xact_lock(session, key)
