"""Multi-row inserts, with SQLite's fast path.

The rules stage writes thousands of rows per batch. On SQLite, SQLAlchemy's per-row
parameter handling (building each row's parameters, then the type chain for every value:
the UTC decorator, SQLite's datetime formatting, the JSON serializer) cost about as much as
SQLite's own work. So on SQLite the statement is compiled once by SQLAlchemy, as it would
be for ``session.execute(insert(table), rows)``, and the rows are converted by each column's
own bind processor, except UTC datetimes, which are formatted in one C call into the text
SQLAlchemy would store. ``tests/test_storage.py`` checks that both ways store the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from prevent.platform.storage.dialect import dialect_of, insert, insert_ignore, is_sqlite
from prevent.platform.storage.tables import UtcDateTime


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], *,
                      skip_existing: Sequence[str] | None = None, fast: bool = True) -> None:
    """``INSERT`` every row (``skip_existing``: ``ON CONFLICT (those columns) DO NOTHING``)."""
    if not rows:
        return
    dialect = dialect_of(session)
    stmt = insert_ignore(dialect, table, skip_existing) if skip_existing else insert(dialect, table)
    names = set(rows[0])
    # Only when every row gives every column: a missing one would need the column default
    # SQLAlchemy applies and the raw statement would not.
    if not fast or not is_sqlite(dialect) or names != set(table.columns.keys()):
        await session.execute(stmt, list(rows))
        return
    compiled = stmt.compile(dialect=dialect, column_keys=list(table.columns.keys()))
    order = compiled.positiontup or []
    # Column by column: one loop per column, in C where a column needs no conversion.
    columns = [_column(rows, name, _processor(table.columns[name].type, dialect)) for name in order]
    params = list(zip(*columns, strict=True))
    connection = await session.connection()
    await connection.exec_driver_sql(compiled.string, params)


def _column(rows: Sequence[dict[str, Any]], name: str,
            convert: Callable[[Any], Any] | None) -> list[Any]:
    values = [row[name] for row in rows]
    if convert is None:
        return values
    if convert is _sqlite_utc_text:
        # Formatting a datetime costs about 40 times a lookup, and a batch's times repeat
        # (every row's receipt time, a burst's publication times): each one is formatted once.
        texts = {value: convert(value) for value in set(values)}
        return [texts[value] for value in values]
    return list(map(convert, values))


def _processor(column_type: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    if isinstance(column_type, UtcDateTime):
        return _sqlite_utc_text
    return column_type.dialect_impl(dialect).bind_processor(dialect)


def _sqlite_utc_text(value: datetime | None) -> str | None:
    """What ``UtcDateTime`` then SQLite's ``DATETIME`` store: naive UTC, microseconds always."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")
