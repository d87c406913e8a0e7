"""The alert page's situation picture: what happened after (and before) the decision.

Per site of the alert: its place on the map, each contact's notices and their states
(queued, sending, sent, delivered, acknowledged with the time, failed with the reason),
the patrol assignment and the visits recorded. The contact's name and phone are given to
roles that may have to call them (need to know: the sites of this alert only; the full
registry stays with engagement officers). A timeline merges decisions and escalations
(audit trail), sends, failures, acknowledgements, patrol assignments and visits, and
reports of the event that arrived after the alert was raised.

``stamp`` is the cheap "has anything changed" check the page's live stream polls.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.platform.storage.tables import (
    AlertRow,
    AuditRow,
    Contact,
    IncidentRow,
    NoticeRow,
    PatrolRow,
    PatrolVisitRow,
    Site,
)
from prevent.users import Principal, Role

CONTACT_READERS = (Role.DUTY_INSPECTOR, Role.ENGAGEMENT_OFFICER, Role.ADMIN)
# One colour per site on the map, the most pressing first.
SITE_STATES = ("failed", "visited", "acknowledged", "patrol", "notified", "to_notify")
SITE_STATE_LABELS = {"failed": "a notice failed", "visited": "patrol visited",
                     "acknowledged": "acknowledged", "patrol": "patrol assigned",
                     "notified": "notified", "to_notify": "to notify"}
REPORTS_IN_TIMELINE = 50


def may_see_contacts(principal: Principal | None) -> bool:
    return principal is not None and principal.role in CONTACT_READERS


def _site_state(notices: list[NoticeRow], patrol: PatrolRow | None, visits: int) -> str:
    states = {n.state for n in notices}
    if "failed" in states and "acknowledged" not in states:
        return "failed"
    if visits:
        return "visited"
    if "acknowledged" in states:
        return "acknowledged"
    if patrol is not None and patrol.status == "assigned":
        return "patrol"
    if states & {"sent", "delivered"}:
        return "notified"
    return "to_notify"


async def situation(session: AsyncSession, alert_id: str, *, site_ids: list[str],
                    principal: Principal | None) -> dict[str, Any]:
    """The sites (with contacts, notices, patrol, visits), the event's position and the
    timeline of one alert. ``site_ids``: the sites the preview names (to notify)."""
    notices = list((await session.execute(select(NoticeRow).where(
        NoticeRow.alert_id == alert_id).order_by(NoticeRow.created_at, NoticeRow.notice_id)
    )).scalars())
    patrols = {p.site_id: p for p in (await session.execute(select(PatrolRow).where(
        PatrolRow.alert_id == alert_id))).scalars()}
    visit_rows = list((await session.execute(select(PatrolVisitRow).where(
        PatrolVisitRow.assignment_id.in_([p.assignment_id for p in patrols.values()]))
        .order_by(PatrolVisitRow.visited_at))).scalars()) if patrols else []
    visits: dict[str, list[PatrolVisitRow]] = defaultdict(list)
    for v in visit_rows:
        visits[v.assignment_id].append(v)
    reports = await partner_reports(session, alert_id)
    wanted = list(dict.fromkeys([*site_ids, *(n.site_id for n in notices if n.site_id),
                                 *patrols, *(r["site_id"] for r in reports)]))
    sites = {s.site_id: s for s in (await session.execute(
        select(Site).where(Site.site_id.in_(wanted)))).scalars()} if wanted else {}
    contacts = {c.contact_id: c for c in (await session.execute(
        select(Contact).where(Contact.site_id.in_(wanted)))).scalars()} if wanted else {}
    show_contacts = may_see_contacts(principal)

    by_site: dict[str, list[NoticeRow]] = defaultdict(list)
    for n in notices:
        by_site[n.site_id].append(n)
    out_sites = []
    for site_id in wanted:
        site = sites.get(site_id)
        site_notices = by_site.get(site_id, [])
        patrol = patrols.get(site_id)
        done = visits.get(patrol.assignment_id, []) if patrol else []
        per_contact: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for n in site_notices:
            per_contact[n.contact_id].append({
                "notice_id": n.notice_id, "kind": n.kind, "channel": n.channel, "state": n.state,
                "error": n.error, "sent_at": n.sent_at, "updated_at": n.updated_at,
                "acknowledged_at": n.acknowledged_at, "acknowledged_via": n.acknowledged_via,
                "attempts": n.attempts, "can_resend": n.state == "failed"})
        contact_ids = list(dict.fromkeys([*per_contact, *(c.contact_id for c in contacts.values()
                                                          if c.site_id == site_id)]))
        out_contacts = []
        for cid in contact_ids:
            c = contacts.get(cid)
            out_contacts.append({
                "contact_id": cid, "notices": per_contact.get(cid, []),
                "name": c.name if c is not None and show_contacts else None,
                "role": c.role if c is not None and show_contacts else None,
                "phone": c.phone if c is not None and show_contacts else None})
        state = _site_state(site_notices, patrol, len(done))
        out_sites.append({
            "site_id": site_id, "name": site.name if site else site_id,
            "address": site.address if site else "", "lat": site.lat if site else None,
            "lon": site.lon if site else None, "state": state,
            "state_label": SITE_STATE_LABELS[state], "contacts": out_contacts,
            "patrol": None if patrol is None else {
                "assignment_id": patrol.assignment_id, "status": patrol.status,
                "zone": patrol.zone_id, "site_name": site.name if site else site_id,
                "ends_at": patrol.payload.get("ends_at"),
                "every_minutes": patrol.payload.get("every_minutes"),
                "visits": [{"visited_at": v.visited_at, "recorded_by": v.recorded_by,
                            "note": v.note} for v in done]}})
    for r in reports:  # who reported, and how to call them back (need to know)
        site, c = sites.get(r["site_id"]), contacts.get(r["contact_id"] or "")
        r["site_name"] = site.name if site else r["site_id"]
        r["address"] = site.address if site else ""
        r["name"] = c.name if c is not None and show_contacts else None
        r["phone"] = c.phone if c is not None and show_contacts else None
    return {"sites": out_sites, "event": await _event_place(session, alert_id), "reports": reports,
            "timeline": await timeline(session, alert_id, notices, patrols, visit_rows, sites),
            "counts": _counts(notices), "show_contacts": show_contacts}


async def partner_reports(session: AsyncSession, alert_id: str) -> list[dict[str, Any]]:
    """The partner reports (concerns raised from an acknowledgement page) among the alert's
    reports: the reporting site, the contact who reported (from the ``partner.report`` audit
    entry), urgency and text."""
    alert = await session.get(AlertRow, alert_id)
    if alert is None:
        return []
    rows = list((await session.execute(select(IncidentRow).where(
        IncidentRow.cluster_id == alert.cluster_id, IncidentRow.feed_id.like("partner:%"))
        .order_by(IncidentRow.published_at).limit(50))).scalars())
    if not rows:
        return []
    site_ids = list({r.feed_id.split(":", 1)[1] for r in rows})
    reporter: dict[str, str] = {}
    for a in (await session.execute(select(AuditRow).where(
            AuditRow.action == "partner.report", AuditRow.subject.in_(site_ids)))).scalars():
        incident_id = (a.after or {}).get("incident_id")
        if incident_id:
            reporter[incident_id] = a.actor.removeprefix("contact:")
    return [{"incident_id": r.incident_id, "site_id": r.feed_id.split(":", 1)[1],
             "contact_id": reporter.get(r.incident_id), "at": r.published_at,
             "urgent": "urgent" in ((r.payload or {}).get("categories") or ()),
             "text": (r.payload or {}).get("summary") or r.title} for r in rows]


def _counts(notices: list[NoticeRow]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for n in notices:
        counts[n.state] += 1
    return dict(counts)


async def _event_place(session: AsyncSession, alert_id: str) -> dict[str, Any] | None:
    """Where the event happened, from the first report that gives coordinates."""
    alert = await session.get(AlertRow, alert_id)
    if alert is None:
        return None
    rows = (await session.execute(select(IncidentRow.payload).where(
        IncidentRow.cluster_id == alert.cluster_id).order_by(IncidentRow.published_at)
        .limit(200))).scalars()
    for payload in rows:
        loc = (payload or {}).get("location") or {}
        if loc.get("lat") is not None and loc.get("lon") is not None:
            return {"lat": float(loc["lat"]), "lon": float(loc["lon"]),
                    "place": loc.get("place") or loc.get("country") or ""}
    return None


ACTION_TEXT = {
    "alert.proposed": "alert raised (proposed)", "alert.created": "alert raised",
    "alert.confirm": "confirmed", "alert.dismiss": "dismissed", "alert.close": "closed (stand-down)",
    "alert.expire": "expired", "alert.escalated": "escalated to the duty roster",
    "alert.escalation_failed": "escalation could not be sent",
    "alert.severity_raised": "severity raised by a new report",
    "alert.exercise_raised": "exercise raised", "alert.claimed": "claimed (on it)",
    "alert.claim_released": "claim released", "patrol.extended": "patrols extended",
    "notice.resend_requested": "failed notice resent", "notice.acknowledge": "notice acknowledged",
}


async def timeline(session: AsyncSession, alert_id: str, notices: list[NoticeRow],
                   patrols: dict[str, PatrolRow], visit_rows: list[PatrolVisitRow],
                   sites: dict[str, Site]) -> list[dict[str, Any]]:
    """Everything that happened to the alert, oldest first: (at, kind, who, text)."""
    items: list[dict[str, Any]] = []

    def add(at: datetime | None, kind: str, who: str, text: str) -> None:
        if at is not None:
            items.append({"at": at, "kind": kind, "who": who, "text": text})

    def site_name(site_id: str) -> str:
        site = sites.get(site_id)
        return site.name if site else site_id

    created_at = None
    for a in (await session.execute(select(AuditRow).where(AuditRow.subject == alert_id)
                                    .order_by(AuditRow.at))).scalars():
        if created_at is None and a.action in ("alert.created", "alert.proposed", "alert.confirmed",
                                               "alert.exercise_raised"):
            created_at = a.at
        text = ACTION_TEXT.get(a.action, a.action.replace("_", " ").replace(".", ": "))
        detail = "; ".join(x for x in (audit.left_out(a.after), a.reason or "") if x)
        if a.action in ("patrol.visit_recorded", "notice.acknowledge"):
            continue  # shown from the visit or the notice row itself (also when not audited)
        kind = ("escalation" if "escalat" in a.action else "update"
                if a.action == "alert.severity_raised" else "decision")
        add(a.at, kind, a.actor, f"{text}{': ' + detail if detail else ''}")
    for n in notices:
        who = f"{site_name(n.site_id)} / {n.contact_id} ({n.channel})"
        add(n.created_at, "queued", "notifier", f"{n.kind} notice queued for {who}")
        if n.sent_at:
            add(n.sent_at, "sent", "notifier", f"{n.kind} notice sent to {who}")
        if n.state == "delivered":
            add(n.updated_at, "delivered", "gateway", f"delivered to {who}")
        if n.state == "failed":
            add(n.updated_at, "failed", "notifier", f"{n.kind} notice to {who} failed: "
                                                    f"{n.error or 'no reason given'}")
        if n.acknowledged_at:
            add(n.acknowledged_at, "acknowledged", n.contact_id,
                f"acknowledged by {who} via {n.acknowledged_via or 'link'}")
    for p in patrols.values():
        add(p.created_at, "patrol", "patrol notifier",
            f"patrol assigned to {site_name(p.site_id)} (zone {p.zone_id}, assignment "
            f"{p.assignment_id})")
        if p.status == "cancelled":
            add(p.updated_at, "patrol", "patrol notifier", f"patrol at {site_name(p.site_id)} cancelled")
    by_assignment = {p.assignment_id: p for p in patrols.values()}
    for v in visit_rows:
        plan = by_assignment.get(v.assignment_id)
        where = site_name(plan.site_id) if plan else v.assignment_id
        add(v.visited_at, "visit", v.recorded_by,
            f"patrol visited {where}{': ' + v.note if v.note else ''}")
    if created_at is not None:
        alert = await session.get(AlertRow, alert_id)
        if alert is not None:
            for r in (await session.execute(select(IncidentRow).where(
                    IncidentRow.cluster_id == alert.cluster_id,
                    IncidentRow.received_at > created_at).order_by(IncidentRow.received_at)
                    .limit(REPORTS_IN_TIMELINE))).scalars():
                add(r.received_at, "update", r.feed_id, f"new report: {r.title}")
    items.sort(key=lambda i: i["at"])
    return items


async def stamp(session: AsyncSession, alert_id: str) -> str:
    """Changes whenever the page's content would: the alert, its notices, patrols, visits,
    audit entries and reports."""
    alert = await session.get(AlertRow, alert_id)
    if alert is None:
        return "missing"
    notices = (await session.execute(select(func.count(), func.max(NoticeRow.updated_at)).where(
        NoticeRow.alert_id == alert_id))).one()
    patrols = (await session.execute(select(func.count(), func.max(PatrolRow.updated_at)).where(
        PatrolRow.alert_id == alert_id))).one()
    visits = (await session.execute(select(func.count()).select_from(PatrolVisitRow).join(
        PatrolRow, PatrolRow.assignment_id == PatrolVisitRow.assignment_id).where(
        PatrolRow.alert_id == alert_id))).scalar_one()
    trail = (await session.execute(select(func.count()).select_from(AuditRow).where(
        AuditRow.subject == alert_id))).scalar_one()
    reports = (await session.execute(select(func.count()).select_from(IncidentRow).where(
        IncidentRow.cluster_id == alert.cluster_id))).scalar_one()
    return ":".join(str(x) for x in (alert.revision, alert.updated_at.isoformat(), *notices,
                                      *patrols, visits, trail, reports))
