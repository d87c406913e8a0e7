"""``column IN (values)`` for thousands of values, as one bound parameter.

The rules stage reads by set: the versions of a batch's 5,000 incidents already stored, the
key index for its words, its clusters and their alerts. SQLAlchemy's ``in_`` binds every
value as a parameter of its own, expanded into the statement at each execution: about a
microsecond per value in the consumer's event loop, in chunks under the engines' parameter
limits. Here the values are one parameter, unpacked by the database: a JSON array through
SQLite's ``json_each``, an array through PostgreSQL's ``= ANY``. Measured on SQLite for
10,000 incident ids: 13 ms against 37-54 ms in 500-id chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement, SQLCoreOperations

from prevent.platform.storage.dialect import in_values


def one_of(session: AsyncSession, column: SQLCoreOperations[Any],
           values: Iterable[str]) -> ColumnElement[bool]:
    """``column`` is one of the (string) ``values``, in the session's dialect."""
    distinct = list(dict.fromkeys(values))  # in first-seen order: sorting would cost more
    return in_values(session, column, distinct)
