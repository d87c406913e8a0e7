"""Grouping: reports of one event from different feeds join one incident cluster.

Two reports are of the same event when they share a community, happened within a
time window, and either their titles share enough distinctive words, or they name
the same country and incident type within a shorter window. Clusters are rows in
the database, so grouping survives a restart. A new cluster's id derives from its
first report, so a redelivered report lands in the same cluster.

Grouping is load, decide, write. A batch is grouped by a :class:`Grouper`: three queries
read what the batch can need (``Grouper.load``: earlier versions' clusters, the key index for
the batch's words, those clusters); then, one report after another, :func:`decide` (pure:
plain data in, a :class:`Decision` out, no database) says which cluster the report joins or
makes, and the Grouper applies the decision in memory (a report can join a cluster made by an
earlier report of the same batch); the clusters and keys are written at the end
(``Grouper.flush``).
Grouping runs once per report on the rules stage's hot path: in memory a cluster keeps its
words and communities as sets too (not columns), and its lists are re-sorted only when a
report brings something new.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.classification import Classification
from prevent.classification.matcher import fold
from prevent.contracts import GlobalIncident, stable_id, utcnow
from prevent.platform.storage.dialect import greatest, upsert
from prevent.platform.storage.membership import one_of
from prevent.platform.storage.tables import ClusterKey, ClusterRow, IncidentRow

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
les des une dans pour sur par avec aux est sont qui que plus apres son ses leur entre contre lors selon
los las del una por para con sus tras durante segun dos das uma com pelo pela seus apos segundo
gli dei delle della una per che dopo contro tra sono der die das den dem und ein eine einer nach mit
bei von auf fur gegen aus sich nicht wird wurde bir ile icin olan sonra
على الى من في عن بعد مع هذا هذه التي الذي قبل خلال بين حيث
کے کی کا میں سے نے کو پر اور ہے ہیں بعد کہ
के की का में से ने को पर और है हैं बाद लिए
ਦੇ ਦੀ ਦਾ ਵਿੱਚ ਨੇ ਨੂੰ ਤੇ ਅਤੇ ਹੈ ਹਨ ਬਾਅਦ
এর এবং থেকে করে পর হয়
של על את עם אחרי בין לא
""".split())  # noqa: SIM905 - a word list reads and edits better as text
# Titles are folded before they are split (``title_tokens``): so are the stopwords.
STOPWORDS = frozenset(fold(w) for w in STOPWORDS)


# A batch asks twice per title (to read the index, to group): the cache holds a whole batch.
@functools.lru_cache(maxsize=16_384)
def title_tokens(text: str) -> frozenset[str]:
    """Distinctive words of a title in any script: folded as the classifier folds text
    (case, accents, Arabic letter variants, optional marks), no stopwords, no numbers
    (counts change), no words under three letters."""
    return frozenset(w for w in fold(text).split()
                     if len(w) >= 3 and not w.isdigit() and w not in STOPWORDS)


def similarity(a: frozenset[str], b: Collection[str]) -> float:
    """Overlap coefficient: robust when one outlet's headline is much longer than another's.
    ``b`` holds distinct words (a cluster's token set: intersecting it is cheapest)."""
    if not a or not b:
        return 0.0
    return len(a.intersection(b)) / min(len(a), len(b))


@dataclass(slots=True)
class Cluster:
    """A cluster's state while a batch is grouped (the columns of ``clusters``)."""

    cluster_id: str
    created_at: datetime
    first_published_at: datetime
    last_published_at: datetime
    title: str
    communities: list[str]
    incident_type: str
    country: str | None
    tokens: list[str]
    max_severity: int
    report_count: int
    # Not columns (``values`` and ``COLUMNS`` leave them out): the lists as sets, for the
    # tests of every report against every candidate, kept in step by ``_joined`` (the only
    # writer of the lists once a cluster exists); and whether the lists are already what
    # ``_joined`` makes of them (sorted, distinct, capped), so that a report that brings
    # nothing new re-sorts nothing.
    token_set: frozenset[str] = field(init=False, repr=False, compare=False)
    community_set: frozenset[str] = field(init=False, repr=False, compare=False)
    canonical: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.token_set = frozenset(self.tokens)
        self.community_set = frozenset(self.communities)
        self.canonical = (self.communities == sorted(self.community_set)
                          and self.tokens == sorted(self.token_set)[:MAX_TOKENS])

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CLUSTER_COLUMNS}

    def copy(self) -> Cluster:
        """A shallow copy, sets and all (nothing recomputed). The lists are shared: they are
        replaced, never changed in place."""
        twin = object.__new__(Cluster)
        for name in _SLOTS:
            setattr(twin, name, getattr(self, name))
        return twin


CLUSTER_COLUMNS = tuple(f.name for f in fields(Cluster) if f.init)
_SLOTS = tuple(f.name for f in fields(Cluster))
COLUMNS = [ClusterRow.__table__.c[name] for name in CLUSTER_COLUMNS]


def _score(row: Cluster, incident: GlobalIncident, c: Classification,
           tokens: frozenset[str]) -> float | None:
    """How well the report fits ``row``, None if not at all. ``row`` is a candidate
    (``candidates``): of one of the report's communities and of its country."""
    gap = min(abs(incident.published - row.first_published_at),
              abs(incident.published - row.last_published_at))
    words = similarity(tokens, row.token_set)
    if words >= MIN_TITLE_SIMILARITY and gap <= TITLE_WINDOW:
        return words + 1.0
    same_event_shape = (row.country is not None and row.country == c.country and c.incident_type != "none"
                        and _family(row.incident_type) == _family(c.incident_type))
    if same_event_shape and gap <= PLACE_TYPE_WINDOW:
        return words + 0.5
    return None


# Types one outlet and another (often in another language) give the same violent event:
# "set ablaze" in one report, "attacked" in the next.
_VIOLENCE = frozenset({"armed_attack", "hate_crime", "bombing", "arson", "riot"})


def _family(incident_type: str) -> str:
    return "violence" if incident_type in _VIOLENCE else incident_type


def _groupable(c: Classification) -> bool:
    return bool(c.communities) and c.incident_type != "none"


def _keys(tokens: frozenset[str], c: Classification) -> set[str]:
    shape = f"§{c.country}|{_family(c.incident_type)}" if c.country else None
    return set(tokens) | ({shape} if shape else set())


def _most_shared(shared: dict[str, int], n: int) -> list[str]:
    """The ids of the ``n`` entries with the highest counts, ties broken by the lowest id, in
    that order: what sorting every entry by ``(-count, id)`` gives. Both sorts are stable and
    in C (the count is looked up by ``dict.__getitem__``, no Python key function). A long tail
    (clusters sharing only a common word) is cut first, so that its ids are not compared."""
    if len(shared) > 8 * n:  # below this, cutting costs more than sorting the tail
        cutoff = sorted(shared.values(), reverse=True)[n - 1]
        ranked = sorted([cluster_id for cluster_id, count in shared.items() if count >= cutoff])
    else:
        ranked = sorted(shared)
    ranked.sort(key=shared.__getitem__, reverse=True)
    return ranked[:n]


def candidates(incident: GlobalIncident, c: Classification, clusters: Mapping[str, Cluster],
               holders: Sequence[str]) -> list[Cluster]:
    """The clusters that can be of this report's event. In: the report, its classification,
    the loaded ``clusters`` by id, and ``holders`` (ids of clusters sharing a key with the
    report recently, an id once per key it shares: ``Grouper._holders``). Out: those active
    within the window, of one of its communities and of its country (a cluster or a report
    with none is of any), at most ``MAX_CANDIDATES`` of them: those sharing the most keys
    with it, then the lowest ids."""
    # Eligibility first: most holders are of other communities or countries, and a report
    # rarely has more than one cluster left to rank (counting and sorting every holder
    # first cost twice the filter). The cap applies to eligible clusters only, so one of
    # them is never crowded out by clusters the report could not join anyway.
    until = incident.published + TITLE_WINDOW
    communities, country = c.communities, c.country
    eligible = {cluster_id: row for cluster_id in set(holders)
                if (row := clusters.get(cluster_id)) is not None and row.first_published_at <= until
                and not (row.community_set and communities and row.community_set.isdisjoint(communities))
                and not (row.country and country and row.country != country)}
    if len(eligible) < 2:
        return list(eligible.values())
    # Counted in C, in one call: a common word is held by every active cluster.
    counts = Counter(holders)
    return [eligible[cluster_id] for cluster_id in
            _most_shared({cluster_id: counts[cluster_id] for cluster_id in eligible}, MAX_CANDIDATES)]


def _joined(row: Cluster, incident: GlobalIncident, c: Classification, tokens: frozenset[str]) -> Cluster:
    """``row`` once this report (its title's ``tokens``) joined it: a new :class:`Cluster`,
    ``row`` unchanged."""
    row = row.copy()
    row.first_published_at = min(row.first_published_at, incident.published)
    row.last_published_at = max(row.last_published_at, incident.published)
    # Most reports of a cluster repeat its words and communities: the lists stay as
    # they are (sorted, distinct, capped) unless something is new.
    if not (row.canonical and row.community_set.issuperset(c.communities)):
        row.communities = sorted(row.community_set.union(c.communities))
        row.community_set = frozenset(row.communities)
    if not (row.canonical and tokens <= row.token_set):
        row.tokens = sorted(row.token_set | tokens)[:MAX_TOKENS]
        row.token_set = frozenset(row.tokens)
    row.canonical = True
    row.max_severity = max(row.max_severity, c.severity)
    row.report_count += 1
    if row.incident_type == "none":
        row.incident_type = c.incident_type
    row.country = row.country or c.country
    return row


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one report goes (:func:`decide`). ``cluster_id``: the cluster it is in.
    ``cluster``: that cluster's columns once the report is in it, to write; None when no row
    changes (a report not grouped, or an earlier version's cluster that has no row).
    ``new``: the report makes the cluster. ``index``: the report was grouped now (not kept
    where an earlier version is), so its keys go to the key index under ``cluster_id``."""

    cluster_id: str
    cluster: Cluster | None = None
    new: bool = False
    index: bool = False


def decide(incident: GlobalIncident, c: Classification, clusters: Mapping[str, Cluster],
           holders: Sequence[str] = (), *, now: datetime, earlier: str | None = None) -> Decision:
    """Which cluster a report joins, or the cluster it makes: pure (plain data in, nothing
    read or changed elsewhere, no database).

    In: the report and its classification; the loaded ``clusters`` by id; ``holders``, the
    clusters sharing a key with it recently (see :func:`candidates`); ``now``, the creation
    time of a new cluster; ``earlier``, the cluster an earlier version of the report is in.
    Out: the :class:`Decision`, with the cluster's values to write."""
    if earlier:  # an updated version of a report stays in its cluster
        row = clusters.get(earlier)
        if row is None:
            return Decision(earlier)
        return Decision(earlier, _joined(row, incident, c, title_tokens(incident.title)))
    if not _groupable(c):
        return Decision(stable_id("clu", incident.incident_id))
    tokens = title_tokens(incident.title)
    # The best score, then the larger cluster; among equals the first candidate (what
    # ``max`` gives).
    best: Cluster | None = None
    best_rank = (0.0, 0)
    for row in candidates(incident, c, clusters, holders):
        score = _score(row, incident, c, tokens)
        if score is not None and (best is None or (score, row.report_count) > best_rank):
            best, best_rank = row, (score, row.report_count)
    if best is not None:
        return Decision(best.cluster_id, _joined(best, incident, c, tokens), index=True)
    # A new cluster's id derives from its first report (hashed only when one is made).
    own_id = stable_id("clu", incident.incident_id)
    return Decision(own_id, Cluster(
        cluster_id=own_id, created_at=now, first_published_at=incident.published,
        last_published_at=incident.published, title=incident.title,
        communities=list(c.communities), incident_type=c.incident_type, country=c.country,
        tokens=sorted(tokens)[:MAX_TOKENS], max_severity=c.severity, report_count=1), new=True, index=True)


class Grouper:
    """Groups the reports of one batch in memory; ``flush`` writes the result."""

    def __init__(self) -> None:
        self.earlier: dict[str, str] = {}  # incident id -> its cluster (earlier versions, this batch)
        self.clusters: dict[str, Cluster] = {}
        self.index: dict[str, dict[str, datetime]] = {}  # key -> cluster -> last published
        self._new: set[str] = set()
        self._changed: set[str] = set()
        self._keys: dict[tuple[str, str], datetime] = {}  # (key, cluster) -> latest published
        self._stored_keys: dict[tuple[str, str], datetime] = {}  # as read from the key index
        # key -> no later than its oldest entry's time (times only move forward, so a floor
        # set when an entry was added stays a lower bound)
        self._floor: dict[str, datetime] = {}
        # (incident id, content hash) -> the report's keys, as ``load`` computed them
        self._report_keys: dict[tuple[str, str], set[str]] = {}

    @classmethod
    async def load(cls, session: AsyncSession, reports: Sequence[tuple[GlobalIncident, Classification]],
                   earlier: dict[str, str]) -> Grouper:
        """Read what grouping ``reports`` can need, in a few queries for the whole batch.
        ``earlier``: the cluster of each report an earlier version of which is stored
        (``earlier_clusters``; the rules stage reads it with the versions it has processed)."""
        self = cls()
        self.earlier.update(earlier)
        fresh = [(i, c) for i, c in reports if i.incident_id not in self.earlier and _groupable(c)]
        wanted = set(self.earlier.values())
        if fresh:
            since = min(i.published for i, _ in fresh) - TITLE_WINDOW
            self._report_keys = {(i.incident_id, i.content_hash): _keys(title_tokens(i.title), c)
                                 for i, c in fresh}
            keys = set().union(*self._report_keys.values())
            for key, cluster_id, last in (await session.execute(
                    select(ClusterKey.key, ClusterKey.cluster_id, ClusterKey.last_published_at)
                    .where(one_of(session, ClusterKey.key, keys),
                           ClusterKey.last_published_at >= since))).all():
                self.index.setdefault(key, {})[cluster_id] = last
                self._stored_keys[(key, cluster_id)] = last
                self._floor[key] = min(self._floor.get(key, last), last)
                wanted.add(cluster_id)
        if wanted:
            for row in (await session.execute(select(*COLUMNS).where(
                    one_of(session, ClusterRow.cluster_id, wanted)))).all():
                self.clusters[row.cluster_id] = Cluster(*row)
        return self

    def _holders(self, keys: set[str], published: datetime) -> list[str]:
        """The clusters holding each of the report's ``keys`` (a report published at
        ``published``) recently, by the key index: a cluster once per key it holds."""
        since = published - TITLE_WINDOW
        holders: list[str] = []
        for key in keys:
            held = self.index.get(key)
            if not held:
                continue
            # When even the key's oldest entry is in the window (a burst), no entry needs
            # its time compared.
            if self._floor[key] >= since:
                holders += held
            else:
                holders += [cluster_id for cluster_id, last in held.items() if last >= since]
        return holders

    def _index(self, cluster_id: str, keys: set[str], published: datetime) -> None:
        """Record the cluster's keys (a key seen again moves its time forward)."""
        # Runs for every grouped report: compare first, and write only what moves (an
        # equal time keeps the time already held, as ``max``/``min`` would). The order of
        # the keys only matters when there are too many (the first in sorted order are kept).
        if len(keys) > MAX_TOKENS:
            keys = set(sorted(keys)[:MAX_TOKENS])
        index, floor, batch = self.index, self._floor, self._keys
        for key in keys:
            held = index.get(key)
            if held is None:
                held = index[key] = {}
            last = held.get(cluster_id)
            if last is None or published > last:
                held[cluster_id] = published
            oldest = floor.get(key)
            if oldest is None or published < oldest:
                floor[key] = published
            pair = (key, cluster_id)
            latest = batch.get(pair)
            if latest is None or published > latest:
                batch[pair] = published

    def assign(self, incident: GlobalIncident, c: Classification) -> str:
        """The cluster this report belongs to (created or updated in memory)."""
        cluster_id = self._assign(incident, c)
        self.earlier.setdefault(incident.incident_id, cluster_id)
        return cluster_id

    def note(self, incident: GlobalIncident, cluster_id: str) -> None:
        """A report stored without grouping (it concerns no community): later versions stay
        in ``cluster_id`` like they would after the batch."""
        self.earlier.setdefault(incident.incident_id, cluster_id)

    def _assign(self, incident: GlobalIncident, c: Classification) -> str:
        """Gather what :func:`decide` needs from memory, decide, apply the decision."""
        earlier = self.earlier.get(incident.incident_id)
        keys: set[str] = set()
        holders: list[str] = []
        if not earlier and _groupable(c):
            keys = (self._report_keys.pop((incident.incident_id, incident.content_hash), set())
                    or _keys(title_tokens(incident.title), c))
            holders = self._holders(keys, incident.published)
        decision = decide(incident, c, self.clusters, holders, now=utcnow(), earlier=earlier)
        self._apply(decision, keys, incident.published)
        return decision.cluster_id

    def _apply(self, decision: Decision, keys: set[str], published: datetime) -> None:
        """Hold a decision in memory until ``flush``: the cluster's values (new or changed)
        and, for a report grouped now, its ``keys`` (of a report published at ``published``)."""
        cluster_id, row = decision.cluster_id, decision.cluster
        if row is not None:
            self.clusters[cluster_id] = row
            if decision.new:
                self._new.add(cluster_id)
            elif cluster_id not in self._new:
                self._changed.add(cluster_id)
        if decision.index:
            self._index(cluster_id, keys, published)

    async def flush(self, session: AsyncSession) -> None:
        """Write new and changed clusters and their keys: one statement each."""
        table = ClusterRow.__table__
        if self._new:
            await session.execute(table.insert(), [self.clusters[i].values() for i in sorted(self._new)])
        if self._changed:
            changed = []
            for cluster_id in sorted(self._changed):
                values = self.clusters[cluster_id].values()
                values["b_cluster_id"] = values.pop("cluster_id")
                changed.append(values)
            await session.execute(table.update().where(table.c.cluster_id == bindparam("b_cluster_id")),
                                  changed)
        # A key whose stored time this batch did not move forward needs no write (most keys
        # of an active cluster, batch after batch).
        keys = {pair: at for pair, at in self._keys.items()
                if (stored := self._stored_keys.get(pair)) is None or at > stored}
        if keys:
            stmt = upsert(session, ClusterKey, ["key", "cluster_id"], lambda excluded: {
                "last_published_at": greatest(session, ClusterKey.last_published_at,
                                              excluded.last_published_at)})
            await session.execute(stmt, [{"key": key, "cluster_id": cluster_id, "last_published_at": at}
                                         for (key, cluster_id), at in sorted(keys.items())])
        self._stored_keys.update(keys)
        self._new, self._changed, self._keys = set(), set(), {}


async def earlier_clusters(session: AsyncSession, incident_ids: Iterable[str]) -> dict[str, str]:
    """The cluster each of these reports joined, for those with a version stored."""
    earlier: dict[str, str] = {}
    for incident_id, cluster_id in (await session.execute(
            select(IncidentRow.incident_id, IncidentRow.cluster_id)
            .where(one_of(session, IncidentRow.incident_id, incident_ids)))).all():
        if cluster_id:
            earlier.setdefault(incident_id, cluster_id)
    return earlier


async def assign_cluster(session: AsyncSession, incident: GlobalIncident, c: Classification) -> str:
    """The cluster this report belongs to (created or updated in the caller's transaction)."""
    grouper = await Grouper.load(session, [(incident, c)],
                                 await earlier_clusters(session, [incident.incident_id]))
    cluster_id = grouper.assign(incident, c)
    await grouper.flush(session)
    return cluster_id
