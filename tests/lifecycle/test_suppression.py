"""Silences suppress matches until they expire; a confirmed alert inhibits lower playbooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from lifecycle.support import INSPECTOR, VIEWER, make_alert, minutes, open_alert
from prevent import audit
from prevent.alerts import lifecycle
from prevent.alerts import states as alerts
from prevent.contracts import utcnow
from prevent.platform.storage.tables import AlertRow, EscalationTimer, OutboxRow, SuppressedMatch
from prevent.rules import suppression
from prevent.rules.playbooks import store
from prevent.users import PermissionDenied

LOWER = """id: faith-community-watch
title: Lower-priority watch on faith communities
owner: test
priority: 20
match:
  communities: {any: [muslim, jewish]}
  min_severity: 1
response:
  notify:
    - communities: [$matched]
"""


def _silence(**matchers: str) -> suppression.SilenceIn:
    return suppression.SilenceIn(matchers=suppression.Matchers(**matchers),
                                 ends_at=utcnow() + timedelta(hours=2),
                                 comment="known hoax circulating; reviewed")


async def _alert_events(db, alert_id: str) -> list[OutboxRow]:
    async with db.transaction() as session:
        return list((await session.execute(select(OutboxRow).where(
            OutboxRow.topic == "prevent.alerts.v1", OutboxRow.key == alert_id))).scalars())


async def test_a_silence_suppresses_then_expires(seeded) -> None:
    t0 = utcnow()
    async with seeded.transaction() as session:
        silence = await suppression.create_silence(session, INSPECTOR, _silence(keyword="hoax"), now=t0)
    candidate = make_alert(cluster="c-hoax", at=t0 + minutes(1), title="Mosque hoax report")
    assert await open_alert(seeded, candidate, text="Mosque arson hoax spreading") is None
    async with seeded.transaction() as session:
        matches = (await session.execute(select(SuppressedMatch))).scalars().all()
        assert await session.get(AlertRow, candidate.alert_id) is None
        timers = (await session.execute(select(EscalationTimer))).scalars().all()
    assert [(m.reason, m.by, m.alert_id) for m in matches] == [
        ("silenced", silence.silence_id, candidate.alert_id)]
    assert timers == [] and await _alert_events(seeded, candidate.alert_id) == []
    # a second report of the same would-be alert: its match is recorded, the decision is
    # not audited again
    second = candidate.model_copy(update={"incident_ids": ("inc-hoax-2",)})
    assert await open_alert(seeded, second, text="Mosque arson hoax spreading") is None
    async with seeded.transaction() as session:
        matched = sorted((await session.execute(select(SuppressedMatch.incident_id))).scalars())
        silenced = [e for e in await audit.entries(session) if e.action == "alert.silenced"]
    assert matched == ["inc-c-hoax", "inc-hoax-2"]
    assert [(e.subject, e.after) for e in silenced] == [
        (candidate.alert_id, {"incident": "inc-c-hoax", "by": silence.silence_id})]
    # an alert the silence does not match is raised as usual
    other = await open_alert(seeded, make_alert(cluster="c-real", at=t0 + minutes(1)),
                             text="Arson at mosque")
    assert other is not None
    # expire it early: the next report of the same cluster is proposed
    async with seeded.transaction() as session:
        await suppression.expire_silence(session, INSPECTOR, silence.silence_id,
                                         reason="hoax debunked", now=t0 + minutes(2))
        active = await suppression.list_silences(session, active_at=t0 + minutes(3))
    assert active == []
    raised = await open_alert(seeded, make_alert(cluster="c-hoax", at=t0 + minutes(3)),
                              text="Mosque arson hoax spreading")
    assert raised is not None and raised.status.value == "proposed"
    assert len(await _alert_events(seeded, raised.alert_id)) == 1
    async with seeded.transaction() as session:
        actions = [r.action for r in await audit.entries(session)]
    assert {"silence.create", "alert.silenced", "silence.expire", "alert.proposed"} <= set(actions)


async def test_a_silence_ends_on_its_own_at_expiry(seeded) -> None:
    t0 = utcnow()
    async with seeded.transaction() as session:
        await suppression.create_silence(session, INSPECTOR, _silence(playbook="place-of-worship-attack",
                                                                      community="muslim"), now=t0)
    assert await open_alert(seeded, make_alert(cluster="a", at=t0 + minutes(5))) is None
    jewish = make_alert(cluster="b", communities=("jewish",), at=t0 + minutes(5))
    assert await open_alert(seeded, jewish) is not None  # community matcher does not match
    assert await open_alert(seeded, make_alert(cluster="a", at=t0 + timedelta(hours=3))) is not None


async def test_silences_need_a_matcher_a_comment_and_the_role(seeded) -> None:
    with pytest.raises(ValidationError, match="at least one matcher"):
        suppression.Matchers()
    with pytest.raises(ValidationError, match="comment"):
        suppression.SilenceIn(matchers=suppression.Matchers(keyword="x1"),
                              ends_at=utcnow() + timedelta(hours=1), comment="")
    async with seeded.transaction() as session:
        with pytest.raises(PermissionDenied, match="may not create silences"):
            await suppression.create_silence(session, VIEWER, _silence(keyword="hoax"))
        with pytest.raises(suppression.SilenceError, match="ends_at must be after"):
            await suppression.create_silence(session, INSPECTOR, suppression.SilenceIn(
                matchers=suppression.Matchers(keyword="hoax"), ends_at=utcnow() - minutes(1),
                comment="backwards"))


async def test_a_confirmed_alert_inhibits_a_lower_priority_playbook(seeded) -> None:
    async with seeded.transaction() as session:
        await store.apply_sources(session, [("lower.yaml", LOWER)], author="test")
    t0 = utcnow()
    high = await open_alert(seeded, make_alert(cluster="k", at=t0))
    # while the higher-priority alert is only proposed, nothing is inhibited
    proposed_lower = await open_alert(seeded, make_alert(cluster="k2", playbook="faith-community-watch",
                                                         at=t0))
    assert proposed_lower is not None
    await lifecycle.decide(seeded, INSPECTOR, high.alert_id, action="confirm", expected_revision=1)
    lower = make_alert(cluster="k", playbook="faith-community-watch", at=t0 + minutes(1))
    assert await open_alert(seeded, lower) is None
    async with seeded.transaction() as session:
        match = (await session.execute(select(SuppressedMatch).where(
            SuppressedMatch.alert_id == lower.alert_id))).scalar_one()
        with pytest.raises(alerts.AlertNotFound):
            await alerts.get(session, lower.alert_id)
        stats = await lifecycle.statistics(session)
    assert (match.reason, match.by) == ("inhibited", high.alert_id)
    assert await _alert_events(seeded, lower.alert_id) == []
    assert stats["suppressed"] == {"inhibited": 1}
    # a lower-priority alert for communities the confirmed one does not cover is not inhibited
    wider = make_alert(cluster="k", playbook="faith-community-watch", communities=("muslim", "jewish"),
                       at=t0 + minutes(2))
    wider = wider.model_copy(update={"incident_ids": ("inc-k-2",)})
    assert await open_alert(seeded, wider) is not None
