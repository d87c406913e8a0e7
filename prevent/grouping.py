"""Grouping: reports of one event from different feeds join one incident cluster.

Two reports are of the same event when they share a community, happened within a
time window, and either their titles share enough distinctive words, or they name
the same country and incident type within a shorter window. Clusters are rows in
the database, so grouping survives a restart. A new cluster's id derives from its
first report, so a redelivered report lands in the same cluster.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.classification import Classification
from prevent.contracts import GlobalIncident, stable_id, utcnow
from prevent.storage.tables import ClusterKey, ClusterRow, IncidentRow

TITLE_WINDOW = timedelta(hours=48)
PLACE_TYPE_WINDOW = timedelta(hours=24)
MIN_TITLE_SIMILARITY = 0.3
MAX_TOKENS = 60
MAX_CANDIDATES = 20
STOPWORDS = frozenset("""
a about after again against all also an and any are as at be been before being but by can could
did do does during each for from had has have he her his how in into is it its just least more most
no not of off on once only or other our out over own same she should so some such than that the
their them then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your said says say told report reports reported
new latest update updates live breaking news police officials official people amid near dozens
""".split())
WORD = re.compile(r"[a-z][a-z'-]{2,}")


def title_tokens(text: str) -> frozenset[str]:
    """Distinctive words of a title: folded, no stopwords, no numbers (counts change)."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return frozenset(w.strip("'-") for w in WORD.findall(folded) if w not in STOPWORDS)


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Overlap coefficient: robust when one outlet's headline is much longer than another's."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


@dataclass(frozen=True)
class Candidate:
    row: ClusterRow
    score: float


def _score(row: ClusterRow, incident: GlobalIncident, c: Classification,
           tokens: frozenset[str]) -> float | None:
    if row.communities and c.communities and not set(row.communities) & set(c.communities):
        return None
    if row.country and c.country and row.country != c.country:
        return None
    gap = min(abs(incident.published - row.first_published_at),
              abs(incident.published - row.last_published_at))
    words = similarity(tokens, frozenset(row.tokens))
    if words >= MIN_TITLE_SIMILARITY and gap <= TITLE_WINDOW:
        return words + 1.0
    same_event_shape = (row.country is not None and row.country == c.country
                        and row.incident_type == c.incident_type and c.incident_type != "none")
    if same_event_shape and gap <= PLACE_TYPE_WINDOW:
        return words + 0.5
    return None


def _groupable(c: Classification) -> bool:
    return bool(c.communities) and c.incident_type != "none"


def _keys(tokens: frozenset[str], c: Classification) -> set[str]:
    shape = f"§{c.country}|{c.incident_type}" if c.country else None
    return set(tokens) | ({shape} if shape else set())


async def _candidates(session: AsyncSession, incident: GlobalIncident, keys: set[str]
                      ) -> list[ClusterRow]:
    """The clusters sharing the most keys with this report, recently active."""
    shared = func.count().label("shared")
    ids = (await session.execute(
        select(ClusterKey.cluster_id, shared)
        .where(ClusterKey.key.in_(sorted(keys)),
               ClusterKey.last_published_at >= incident.published - TITLE_WINDOW)
        .group_by(ClusterKey.cluster_id).order_by(shared.desc()).limit(MAX_CANDIDATES)
    )).scalars().all()
    if not ids:
        return []
    return list((await session.execute(select(ClusterRow).where(
        ClusterRow.cluster_id.in_(ids),
        ClusterRow.first_published_at <= incident.published + TITLE_WINDOW))).scalars())


async def _index(session: AsyncSession, cluster_id: str, keys: set[str], published: datetime) -> None:
    """Record the cluster's keys in one statement (a key seen again moves its time forward)."""
    postgres = session.bind.dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    stmt = insert(ClusterKey).values([
        {"key": key, "cluster_id": cluster_id, "last_published_at": published}
        for key in sorted(keys)[:MAX_TOKENS]])
    later = (func.greatest if postgres else func.max)(ClusterKey.last_published_at,
                                                      stmt.excluded.last_published_at)
    await session.execute(stmt.on_conflict_do_update(index_elements=["key", "cluster_id"],
                                                     set_={"last_published_at": later}))


async def assign_cluster(session: AsyncSession, incident: GlobalIncident, c: Classification) -> str:
    """The cluster this report belongs to (created or updated in the caller's transaction)."""
    earlier = (await session.execute(select(IncidentRow.cluster_id).where(
        IncidentRow.incident_id == incident.incident_id).limit(1))).scalar()
    if earlier:  # an updated version of a report stays in its cluster
        await _update(session, earlier, incident, c, title_tokens(incident.title))
        return earlier
    own_id = stable_id("clu", incident.incident_id)
    if not _groupable(c):
        return own_id
    tokens = title_tokens(incident.title)
    keys = _keys(tokens, c)
    rows = await _candidates(session, incident, keys)
    scored = [Candidate(r, s) for r in rows if (s := _score(r, incident, c, tokens)) is not None]
    if scored:
        best = max(scored, key=lambda cand: (cand.score, cand.row.report_count))
        await _update(session, best.row.cluster_id, incident, c, tokens)
        await _index(session, best.row.cluster_id, keys, incident.published)
        return best.row.cluster_id
    session.add(ClusterRow(
        cluster_id=own_id, created_at=utcnow(), first_published_at=incident.published,
        last_published_at=incident.published, title=incident.title, communities=list(c.communities),
        incident_type=c.incident_type, country=c.country, tokens=sorted(tokens)[:MAX_TOKENS],
        max_severity=c.severity, report_count=1))
    await _index(session, own_id, keys, incident.published)
    return own_id


async def _update(session: AsyncSession, cluster_id: str, incident: GlobalIncident,
                  c: Classification, tokens: frozenset[str]) -> None:
    row = await session.get(ClusterRow, cluster_id)
    if row is None:
        return
    row.first_published_at = min(row.first_published_at, incident.published)
    row.last_published_at = max(row.last_published_at, incident.published)
    row.communities = sorted(set(row.communities) | set(c.communities))
    row.tokens = sorted(set(row.tokens) | tokens)[:MAX_TOKENS]
    row.max_severity = max(row.max_severity, c.severity)
    row.report_count += 1
    if row.incident_type == "none":
        row.incident_type = c.incident_type
    row.country = row.country or c.country
