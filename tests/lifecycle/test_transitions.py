"""The alert state machine: every legal and illegal transition, conflicts, roles, audit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from lifecycle.support import INSPECTOR, INSPECTOR_2, VIEWER, make_alert, open_alert
from prevent import audit
from prevent.alerts import lifecycle
from prevent.alerts import states as alerts
from prevent.contracts import AlertStatus, Scope
from prevent.platform.storage.tables import AuditRow, OutboxRow
from prevent.users import PermissionDenied

S = AlertStatus
NOTE = {"confirm": None, "dismiss": "no local link", "close": "situation calm"}
DISPOSITION = {"dismiss": "not_relevant"}
# Every (from-state, action) pair and where it must lead; None means illegal.
LEGAL = {
    (S.PROPOSED, "confirm"): S.CONFIRMED, (S.PROPOSED, "dismiss"): S.DISMISSED,
    (S.PROPOSED, "expire"): S.EXPIRED, (S.CONFIRMED, "close"): S.CLOSED,
}
PATHS = {S.PROPOSED: [], S.CONFIRMED: ["confirm"], S.DISMISSED: ["dismiss"],
         S.EXPIRED: ["expire"], S.CLOSED: ["confirm", "close"]}


async def _apply(db, alert_id: str, action: str, revision: int):
    async with db.transaction() as session:
        return await alerts.decide(session, alert_id, alerts.Decision(
            action=action, actor=INSPECTOR.name, expected_revision=revision,
            note=NOTE.get(action) or "why", disposition=DISPOSITION.get(action)))


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("action", ["confirm", "dismiss", "expire", "close"])
async def test_every_transition_is_legal_or_a_clear_error(seeded, start: S, action: str) -> None:
    alert = await open_alert(seeded, make_alert())
    assert alert is not None
    revision = 1
    for step in PATHS[start]:
        revision = (await _apply(seeded, alert.alert_id, step, revision)).revision
    target = LEGAL.get((start, action))
    if target is None:
        with pytest.raises(alerts.IllegalTransition, match=f"cannot {action} .*: it is {start.value}"):
            await _apply(seeded, alert.alert_id, action, revision)
        return
    after = await _apply(seeded, alert.alert_id, action, revision)
    assert after.status is target and after.revision == revision + 1
    async with seeded.transaction() as session:
        trail = [r.action for r in await audit.entries(session, subject=alert.alert_id)]
        events = (await session.execute(select(OutboxRow).where(
            OutboxRow.key == alert.alert_id, OutboxRow.topic == "prevent.alerts.v1"))).scalars().all()
    assert trail[-1] == f"alert.{action}"
    assert events[-1].subtype == target.value and events[-1].event_id.endswith(f":{after.revision}")


async def test_unknown_action_is_illegal(seeded) -> None:
    alert = await open_alert(seeded, make_alert())
    with pytest.raises(alerts.IllegalTransition, match="unknown action 'approve'"):
        await _apply(seeded, alert.alert_id, "approve", 1)


async def test_users_cannot_expire_and_viewers_cannot_decide(seeded) -> None:
    alert = await open_alert(seeded, make_alert())
    with pytest.raises(alerts.IllegalTransition, match="not a decision a user can take"):
        await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="expire", expected_revision=1)
    with pytest.raises(PermissionDenied, match=r"view.cy .viewer. may not confirm alerts"):
        await lifecycle.decide(seeded, VIEWER, alert.alert_id, action="confirm", expected_revision=1)
    async with seeded.transaction() as session:
        assert (await alerts.get(session, alert.alert_id)).status is S.PROPOSED


async def test_dismissing_needs_a_disposition_and_a_note(seeded) -> None:
    alert = await open_alert(seeded, make_alert())
    with pytest.raises(alerts.AlertError, match="needs a disposition"):
        await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="dismiss",
                               expected_revision=1, note="x", disposition="bored")
    with pytest.raises(alerts.AlertError, match="needs a note"):
        await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="dismiss",
                               expected_revision=1, note="  ", disposition="duplicate")
    done = await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="dismiss",
                                  expected_revision=1, note="same as alr_x", disposition="duplicate")
    assert done.status is S.DISMISSED
    async with seeded.transaction() as session:
        entry = (await audit.entries(session, subject=alert.alert_id))[-1]
    assert entry.reason == "duplicate: same as alr_x" and entry.actor == INSPECTOR.name


async def test_confirmation_narrows_the_scope_and_keeps_the_note(seeded) -> None:
    alert = await open_alert(seeded, make_alert())
    scope = Scope(excluded_sites=("site-masjid-riverside",), excluded_channels=("sms",))
    done = await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="confirm",
                                  expected_revision=1, note="riverside already briefed", scope=scope)
    assert done.scope == scope and done.note == "riverside already briefed"
    async with seeded.transaction() as session:
        preview = await lifecycle.preview(session, done)
        entry = (await audit.entries(session, subject=alert.alert_id))[-1]
    assert preview["sites"] == [] and preview["recipients"] == []
    assert entry.after["scope"]["excluded_sites"] == ["site-masjid-riverside"]
    closed = await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="close",
                                    expected_revision=2, note="stand down")
    assert closed.status is S.CLOSED and closed.scope == scope  # the stand-down follows the scope


async def test_only_a_confirmation_narrows_the_scope(seeded) -> None:
    alert = await open_alert(seeded, make_alert())
    with pytest.raises(alerts.AlertError, match="only a confirmation can narrow"):
        await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="dismiss",
                               expected_revision=1, note="n", disposition="duplicate",
                               scope=Scope(excluded_sites=("x",)))


async def test_a_stale_revision_is_a_conflict_naming_who_decided(seeded) -> None:
    alert = await open_alert(seeded, make_alert())
    await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="confirm", expected_revision=1)
    with pytest.raises(alerts.AlertConflict, match=r"changed by insp.ada .now confirmed, revision 2"):
        await lifecycle.decide(seeded, INSPECTOR_2, alert.alert_id, action="dismiss",
                               expected_revision=1, note="n", disposition="duplicate")


async def test_two_inspectors_confirming_at_once_one_wins(seeded) -> None:
    """Two transactions race; the compare-and-set lets exactly one through."""
    alert = await open_alert(seeded, make_alert())
    results = await asyncio.gather(
        lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="confirm", expected_revision=1,
                         note="ada"),
        lifecycle.decide(seeded, INSPECTOR_2, alert.alert_id, action="confirm", expected_revision=1,
                         note="bo"),
        return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], alerts.AlertConflict), lost[0]
    assert f"changed by {won[0].decided_by}" in str(lost[0])
    async with seeded.transaction() as session:
        confirms = (await session.execute(select(AuditRow).where(
            AuditRow.subject == alert.alert_id, AuditRow.action == "alert.confirm"))).scalars().all()
    assert [c.actor for c in confirms] == [won[0].decided_by]


async def test_interleaved_sessions_the_second_writer_gets_the_conflict(seeded) -> None:
    """Deterministic interleaving: B reads before A commits, writes after."""
    alert = await open_alert(seeded, make_alert())
    async with seeded.sessions() as session_b:
        await session_b.begin()
        seen_by_b = await alerts.get(session_b, alert.alert_id)
        await session_b.rollback()  # B's read transaction ends; its decision carries revision 1
        await lifecycle.decide(seeded, INSPECTOR, alert.alert_id, action="confirm",
                               expected_revision=seen_by_b.revision)
    with pytest.raises(alerts.AlertConflict) as raised:
        await lifecycle.decide(seeded, INSPECTOR_2, alert.alert_id, action="confirm",
                               expected_revision=seen_by_b.revision)
    assert raised.value.current.decided_by == INSPECTOR.name


async def test_a_more_severe_report_raises_severity_and_is_recorded(seeded) -> None:
    alert = await open_alert(seeded, make_alert(severity=2))
    async with seeded.transaction() as session:
        after = await alerts.raise_severity(session, alert, severity=3, incident_id="inc-2",
                                            actor="rules-consumer")
        entry = (await audit.entries(session, subject=alert.alert_id))[-1]
    assert (after.severity, after.previous_severity, after.revision) == (3, 2, 2)
    assert entry.action == "alert.severity_raised" and "2 → 3" in entry.reason
