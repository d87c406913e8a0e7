"""Silences and inhibition (after Prometheus Alertmanager): matches recorded, not proposed.

* A **silence** is created by a duty inspector: matchers (playbook, community, cluster,
  keyword; every given matcher must match), a start, an expiry, a mandatory comment.
  While active, a new alert it matches is not raised: the match is written to
  ``suppressed_matches`` (and audited) instead, and nothing is published.
* **Inhibition**: a confirmed alert for a cluster inhibits a lower-priority playbook's
  new alert for the same cluster when the confirmed alert already covers all of its
  communities. The inhibited match is recorded the same way.

Every suppressed match (a would-be alert and the report that matched) is a row; the
decision is audited once per would-be alert and suppressor, like an alert's creation: the
later reports of the event match the same would-be alert, as they would be attached to a
raised one, and a major event brings thousands of them. The would-be alert itself is kept
on the match that records it first (in a batch, or a single raise), not copied onto each.

The decision itself is :func:`decide`, a pure function of plain data (the would-be alert,
the silences, the confirmed alerts, the report's text, the time) returning a
:class:`Verdict`; ``gate`` and ``Gate.check`` load what it reads, call it, and write the match
and the audit entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.contracts import Alert, AlertStatus, stable_id, utcnow
from prevent.platform.storage.tables import AlertRow, SilenceRow, SuppressedMatch
from prevent.users import Principal, Role, require

if TYPE_CHECKING:
    from prevent.alerts.states import AuditArgs

log = logging.getLogger("prevent.rules.suppression")
SILENCED, INHIBITED = "silenced", "inhibited"


class Matchers(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    playbook: str | None = Field(default=None, min_length=1)
    community: str | None = Field(default=None, min_length=1)
    cluster: str | None = Field(default=None, min_length=1)
    keyword: str | None = Field(default=None, min_length=2)

    @model_validator(mode="after")
    def _at_least_one(self) -> Matchers:
        if not any((self.playbook, self.community, self.cluster, self.keyword)):
            raise ValueError("a silence needs at least one matcher: playbook, community, cluster "
                             "or keyword")
        return self

    def match(self, alert: Candidate, text: str) -> bool:
        return ((self.playbook is None or alert.playbook_id == self.playbook)
                and (self.community is None or self.community in alert.communities)
                and (self.cluster is None or alert.cluster_id == self.cluster)
                and (self.keyword is None or self.keyword.casefold() in text.casefold()))


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    matchers: Matchers
    starts_at: AwareDatetime | None = None  # None: now
    ends_at: AwareDatetime
    comment: str = Field(min_length=3, max_length=2000)


class SilenceError(ValueError):
    pass


def silence_view(row: SilenceRow, now: datetime | None = None) -> dict[str, object]:
    now = now or utcnow()
    return {"silence_id": row.silence_id, "matchers": row.matchers,
            "starts_at": row.starts_at.isoformat(), "ends_at": row.ends_at.isoformat(),
            "comment": row.comment, "created_by": row.created_by, "expired_by": row.expired_by,
            "active": row.starts_at <= now < row.ends_at}


async def create_silence(session: AsyncSession, principal: Principal, silence: SilenceIn, *,
                         now: datetime | None = None) -> SilenceRow:
    require(principal, Role.DUTY_INSPECTOR, action="create silences")
    now = now or utcnow()
    starts = silence.starts_at or now
    if silence.ends_at <= starts:
        raise SilenceError("silence: ends_at must be after starts_at")
    matchers = silence.matchers.model_dump(exclude_none=True)
    row = SilenceRow(silence_id=stable_id("sil", principal.name, sorted(matchers.items()),
                                          starts.isoformat(), silence.ends_at.isoformat()),
                     matchers=matchers, starts_at=starts, ends_at=silence.ends_at,
                     comment=silence.comment, created_by=principal.name, created_at=now)
    if await session.get(SilenceRow, row.silence_id) is not None:
        raise SilenceError(f"the same silence already exists: {row.silence_id}")
    session.add(row)
    await audit.record(session, actor=principal.name, action="silence.create",
                       subject=row.silence_id, after=silence_view(row, now), reason=silence.comment)
    return row


async def list_silences(session: AsyncSession, *, active_at: datetime | None = None
                        ) -> list[SilenceRow]:
    query = select(SilenceRow).order_by(SilenceRow.created_at.desc())
    if active_at is not None:
        query = query.where(SilenceRow.starts_at <= active_at, SilenceRow.ends_at > active_at)
    return list((await session.execute(query)).scalars())


async def expire_silence(session: AsyncSession, principal: Principal, silence_id: str, *,
                         reason: str | None = None, now: datetime | None = None) -> SilenceRow:
    """End a silence early (idempotent: an already ended silence is left as it is)."""
    require(principal, Role.DUTY_INSPECTOR, action="expire silences")
    now = now or utcnow()
    row = await session.get(SilenceRow, silence_id)
    if row is None:
        raise SilenceError(f"no silence {silence_id}")
    if row.ends_at <= now:
        return row
    before = silence_view(row, now)
    await session.execute(update(SilenceRow).where(SilenceRow.silence_id == silence_id)
                          .values(ends_at=now, expired_by=principal.name))
    await session.refresh(row)
    await audit.record(session, actor=principal.name, action="silence.expire", subject=silence_id,
                       before=before, after=silence_view(row, now), reason=reason)
    return row


class Candidate(NamedTuple):
    """What a suppression is judged on: the alert that would be raised, before it is built
    (most would-be alerts of a suppressed event are never built)."""

    alert_id: str
    cluster_id: str
    playbook_id: str
    communities: tuple[str, ...]
    exercise: bool

    @classmethod
    def of(cls, alert: Alert) -> Candidate:
        return cls(alert.alert_id, alert.cluster_id, alert.playbook_id, alert.communities,
                   alert.exercise)


class Silence(NamedTuple):
    """A silence as :func:`decide` reads it (``Silence.of`` a stored row)."""

    silence_id: str
    matchers: Matchers
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str

    @classmethod
    def of(cls, row: SilenceRow) -> Silence:
        return cls(row.silence_id, Matchers.model_validate(row.matchers), row.starts_at,
                   row.ends_at, row.created_by, row.comment)

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True)
class Verdict:
    """What :func:`decide` found for a would-be alert: raise it (``reason`` None), or not —
    silenced by a silence or inhibited by a confirmed alert (``by`` its id), with ``why``,
    the reason a duty inspector reads in the audit."""

    reason: str | None = None  # SILENCED or INHIBITED; None: raise the alert
    by: str = ""
    why: str = ""

    @property
    def passes(self) -> bool:
        return self.reason is None


PASS = Verdict()


def decide(alert: Candidate, *, text: str, silences: Iterable[Silence],
           confirmed: Iterable[Alert], priority_of: Callable[[str], int], now: datetime
           ) -> Verdict:
    """Whether ``alert`` is raised, silenced or inhibited: pure, no database.

    Silences come first: the first of ``silences`` active at ``now`` whose matchers all
    match ``alert`` and ``text`` (the report's title and summary) silences it. Otherwise the
    first of ``confirmed`` that is a confirmed alert of another playbook, of higher
    priority (``priority_of`` a playbook id), for the same cluster and already covering all
    of ``alert``'s communities inhibits it. An exercise is judged like a real alert.
    ``confirmed`` is read only when no silence applies."""
    silence = _silence_among(silences, alert, text, now)
    if silence is not None:
        return Verdict(SILENCED, silence.silence_id,
                       f"silence by {silence.created_by}: {silence.comment}")
    inhibitor = _inhibitor_among(confirmed, alert, priority_of)
    if inhibitor is None:
        return PASS
    return Verdict(INHIBITED, inhibitor.alert_id,
                   f"confirmed alert {inhibitor.alert_id} (playbook {inhibitor.playbook_id}) covers it")


def _silence_among(silences: Iterable[Silence], alert: Candidate, text: str, now: datetime
                   ) -> Silence | None:
    for silence in silences:
        if silence.active(now) and silence.matchers.match(alert, text):
            return silence
    return None


def _inhibitor_among(confirmed: Iterable[Alert], alert: Candidate,
                     priority_of: Callable[[str], int]) -> Alert | None:
    """A confirmed alert of another, higher-priority playbook for the same cluster that
    already covers all of ``alert``'s communities."""
    mine = priority_of(alert.playbook_id)
    for other in confirmed:
        if (other.cluster_id != alert.cluster_id or other.playbook_id == alert.playbook_id
                or other.status is not AlertStatus.CONFIRMED):
            continue
        if priority_of(other.playbook_id) > mine and set(alert.communities) <= set(other.communities):
            return other
    return None


def _deferred(alerts: Callable[[], Iterable[Alert]]) -> Iterator[Alert]:
    """``alerts()``, gathered only if :func:`decide` reads them (no silence applies)."""
    yield from alerts()


async def _active(session: AsyncSession, now: datetime) -> list[Silence]:
    return [Silence.of(row) for row in await list_silences(session, active_at=now)]


def _match_values(alert: Candidate, incident_id: str, verdict: Verdict, now: datetime,
                  would_be: Alert | None) -> dict[str, object]:
    return {"match_id": stable_id("sup", alert.alert_id, incident_id), "alert_id": alert.alert_id,
            "incident_id": incident_id, "cluster_id": alert.cluster_id,
            "playbook_id": alert.playbook_id, "reason": verdict.reason, "by": verdict.by,
            "exercise": alert.exercise, "at": now,
            "payload": would_be.model_dump(mode="json") if would_be is not None else None}


def _audit_key(alert: Candidate, reason: str, by: str) -> str:
    """One audit entry per would-be alert and suppressor, however many reports match it."""
    return f"suppressed|{alert.alert_id}|{reason}|{by}"


def _audit(verdict: Verdict, alert: Candidate, incident_id: str) -> AuditArgs:
    return {"action": f"alert.{verdict.reason}", "subject": alert.alert_id,
            "after": {"incident": incident_id, "by": verdict.by}, "reason": verdict.why,
            "key": _audit_key(alert, str(verdict.reason), verdict.by)}


async def gate(session: AsyncSession, alert: Alert, *, incident_id: str, text: str,
               priority_of: Callable[[str], int], now: datetime) -> SuppressedMatch | None:
    """Before a new alert is raised: record and return the suppression that applies, if any."""
    async def confirmed() -> list[Alert]:
        rows = (await session.execute(select(AlertRow).where(
            AlertRow.cluster_id == alert.cluster_id, AlertRow.playbook_id != alert.playbook_id,
            AlertRow.status == AlertStatus.CONFIRMED.value))).scalars()
        return [Alert.model_validate(row.payload) for row in rows]

    candidate = Candidate.of(alert)
    silences = await _active(session, now)
    # Silences come first: the confirmed alerts are read only when no silence applies.
    others = [] if _silence_among(silences, candidate, text, now) else await confirmed()
    verdict = decide(candidate, text=text, silences=silences, confirmed=others,
                     priority_of=priority_of, now=now)
    if verdict.passes:
        return None
    values = _match_values(candidate, incident_id, verdict, now, alert)
    existing = await session.get(SuppressedMatch, values["match_id"])
    if existing is not None:
        return existing
    row = SuppressedMatch(**values)
    session.add(row)
    await audit.record(session, actor="rules-consumer",
                       **_audit(verdict, candidate, incident_id))
    return row


class Gate:
    """``gate`` for a batch: the active silences are read once; the caller supplies the
    cluster's alerts as they stand in the batch; matches and audit entries are staged."""

    def __init__(self, silences: list[Silence], now: datetime) -> None:
        self.silences = silences
        self.now = now
        self._recorded: set[tuple[str, str]] = set()  # (would-be alert, suppressor) in this batch

    @classmethod
    async def load(cls, session: AsyncSession, now: datetime) -> Gate:
        return cls(await _active(session, now), now)

    def check(self, staged: audit.Staged, alert: Candidate, *, incident_id: str, text: str,
              would_be: Callable[[], Alert], cluster_alerts: Callable[[], Iterable[Alert]],
              priority_of: Callable[[str], int], actor: str = "rules-consumer") -> str | None:
        """The reason (silenced, inhibited) ``alert`` is not raised, recorded; None: raise it.
        A match recorded before (same alert and incident) is not recorded again; the
        decision is audited once per would-be alert and suppressor. ``would_be`` builds the
        alert, for the first match of the batch that records it."""
        verdict = decide(alert, text=text, silences=self.silences,
                         confirmed=_deferred(cluster_alerts), priority_of=priority_of, now=self.now)
        if verdict.passes:
            return None
        first = (alert.alert_id, verdict.by) not in self._recorded
        values = _match_values(alert, incident_id, verdict, self.now, would_be() if first else None)
        if staged.add(SuppressedMatch.__table__, values, key=values["match_id"],
                      skip_existing=("match_id",)) and first:
            self._recorded.add((alert.alert_id, verdict.by))
            # Logged once per batch, not per report: a major event brings thousands.
            log.info("alert %s not raised: %s by %s", alert.alert_id, verdict.reason, verdict.by)
            # Keyed: a later batch's entry for the same decision is not written again.
            staged.record(actor=actor, **_audit(verdict, alert, incident_id))
        return verdict.reason


async def suppressed(session: AsyncSession, *, limit: int = 200) -> list[SuppressedMatch]:
    return list((await session.execute(select(SuppressedMatch).order_by(SuppressedMatch.at.desc())
                                        .limit(limit))).scalars())
