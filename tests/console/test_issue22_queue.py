"""Issue 22, "the queue says what needs deciding now": a count of undecided alerts, each with
its age and time to escalation, escalated and urgent ones marked, decided alerts and
exercises out of the default view, and a claim ("I'm on it") other inspectors see."""

from __future__ import annotations

import re
from contextlib import aclosing
from datetime import timedelta

from sqlalchemy import update

from prevent.alerts import lifecycle
from prevent.contracts import utcnow
from prevent.platform.storage.tables import EscalationTimer
from prevent.users import Principal, Role

from .conftest import Console

INSPECTOR = Principal("duty-inspector", Role.DUTY_INSPECTOR)


async def _exercise(console: Console, title: str, severity: int = 3) -> str:
    async with console.db.transaction() as session:
        alert = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=severity, title=title)
    return alert.alert_id


def _row(html: str, alert_id: str) -> str | None:
    found = re.search(rf'<tr data-alert-id="{alert_id}".*?</tr>', html, re.S)
    return found.group(0) if found else None


async def test_default_view_is_what_needs_deciding(console: Console) -> None:
    open_id = await _exercise(console, "Exercise: open")
    decided_id = await _exercise(console, "Exercise: decided")
    await lifecycle.decide(console.db, INSPECTOR, decided_id, action="confirm", expected_revision=1)
    async with console.db.transaction() as session:  # its first escalation level fired
        await session.execute(update(EscalationTimer).where(
            EscalationTimer.alert_id == open_id, EscalationTimer.kind == "escalate",
            EscalationTimer.level == 1).values(state="fired"))
    client, _token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        default = (await client.get("/")).text
        with_ex = (await client.get("/", params={"exercises": "1"})).text
        everything = (await client.get("/", params={"status": "all", "exercises": "1"})).text
        rows = (await client.get("/alerts/rows", params={"exercises": "1"})).text
    assert _row(default, open_id) is None, "exercises are out of the default view"
    assert "0</strong> alerts need deciding now (and 1 exercise)" in default
    row = _row(with_ex, open_id)
    assert row is not None and _row(with_ex, decided_id) is None  # decided: out of the default
    assert 'badge urgent' in row and 'badge escalated' in row
    assert re.search(r"<td>\d+ min<br>", row), row  # its age
    assert _row(everything, decided_id) is not None
    assert _row(rows, open_id) is not None and _row(rows, decided_id) is None


async def test_time_to_escalation_is_shown(console: Console) -> None:
    alert_id = await _exercise(console, "Exercise: timer", severity=2)
    async with console.db.transaction() as session:
        await session.execute(update(EscalationTimer).where(
            EscalationTimer.alert_id == alert_id, EscalationTimer.kind == "escalate")
            .values(due_at=utcnow() + timedelta(minutes=7, seconds=30)))
    client, _token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        row = _row((await client.get("/", params={"exercises": "1"})).text, alert_id)
    assert row is not None and re.search(r"in [67] min", row), row
    assert "badge urgent" not in row


async def test_a_claim_is_shown_to_others_and_ends_on_decision(console: Console) -> None:
    alert_id = await _exercise(console, "Exercise: claim")
    me, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(me):
        page = (await me.get(f"/alerts/{alert_id}")).text
        assert "I&#39;m on it" in page or "I'm on it" in page
        done = await me.post(f"/alerts/{alert_id}/claim", data={"csrf_token": token})
        assert done.status_code == 303
        assert "You are on it" in (await me.get(f"/alerts/{alert_id}")).text
    viewer, _vt = await console.signed_in(Role.VIEWER)
    async with aclosing(viewer):
        row = _row((await viewer.get("/", params={"exercises": "1"})).text, alert_id)
        assert row is not None and 'data-claimed-by="duty-inspector"' in row
        assert "duty-inspector is on it" in row
        refused = await viewer.post(f"/alerts/{alert_id}/claim", data={"csrf_token": _vt})
        assert refused.status_code == 403
    await lifecycle.decide(console.db, INSPECTOR, alert_id, action="confirm", expected_revision=1)
    viewer, _vt = await console.signed_in(Role.VIEWER)
    async with aclosing(viewer):
        row = _row((await viewer.get("/", params={"status": "all", "exercises": "1"})).text, alert_id)
    assert row is not None and "is on it" not in row  # released by the decision


async def test_a_claim_lapses_and_can_be_released(console: Console) -> None:
    from prevent.web import claims

    alert_id = await _exercise(console, "Exercise: lapse")
    async with console.db.transaction() as session:
        await claims.claim(session, INSPECTOR, alert_id, release=False, minutes=15)
    async with console.db.transaction() as session:
        now = utcnow()
        assert alert_id in await claims.active_claims(session, [alert_id], now, 15)
        assert alert_id not in await claims.active_claims(
            session, [alert_id], now + timedelta(minutes=16), 15)
        other = Principal("other", Role.DUTY_INSPECTOR)
        try:
            await claims.claim(session, other, alert_id, release=False, minutes=15)
        except claims.ClaimError as exc:
            assert "duty-inspector is already on it" in str(exc)
        else:
            raise AssertionError("a second inspector took a held claim")
        await claims.claim(session, INSPECTOR, alert_id, release=True, minutes=15)
    async with console.db.transaction() as session:
        assert alert_id not in await claims.active_claims(session, [alert_id], utcnow(), 15)
