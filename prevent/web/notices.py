"""GET /notices/{notice_id}.cap.xml: a notice as its CAP 1.2 document; and the alert
page's "Resend" for a failed notice.

The CAP download needs a principal (any role, prevent.web.auth). The document holds no
contact details and no acknowledgement link.

POST /notices/{notice_id}/resend (duty inspector, admin): a failed notice goes back to
``queued``, due now, with its refusal count cleared; the centre notifier's scanner sends
it again with the same id, Message-ID / idempotency key and acknowledgement link. Only a
notice still ``failed`` changes (a compare-and-set), so two clicks resend once. Audited on
the alert.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import update

from prevent import audit
from prevent.contracts import utcnow
from prevent.platform.storage.tables import NoticeRow
from prevent.users import Principal, Role, require
from prevent.web import deps, render
from prevent.web.auth import current_principal
from prevent.web.security import gate

router = APIRouter()
RESENDERS = (Role.DUTY_INSPECTOR, Role.ADMIN)


@router.get("/notices/{notice_id}.cap.xml")
async def notice_cap(request: Request, notice_id: str,
                     _p: Principal = Depends(current_principal)) -> Response:
    async with deps.db(request).transaction() as session:
        notice = await session.get(NoticeRow, notice_id)
    if notice is None or not notice.cap_xml:
        raise HTTPException(404, "no such notice")
    return Response(notice.cap_xml, media_type="application/xml", headers={
        "Content-Disposition": f'attachment; filename="{notice_id}.cap.xml"'})


@router.post("/notices/{notice_id}/resend")
async def resend(request: Request, notice_id: str, principal: Principal = Depends(gate)) -> Response:
    require(principal, *RESENDERS, action="resend notices")
    now = utcnow()
    async with deps.db(request).transaction() as session:
        notice = await session.get(NoticeRow, notice_id[:64])
        if notice is None:
            return render.message(request, "Notice not found", "no such notice", status=404)
        alert_id, reason = notice.alert_id, notice.error
        result = await session.execute(update(NoticeRow).where(
            NoticeRow.notice_id == notice.notice_id, NoticeRow.state == "failed").values(
            state="queued", error=None, next_attempt_at=now, refusals=0, updated_at=now))
        # ignored: SQLAlchemy types execute() as returning Result; an UPDATE gives a CursorResult
        changed = result.rowcount  # type: ignore[attr-defined]
        if not changed:
            return render.message(request, "Not resent",
                                  "only a failed notice can be resent; this one is "
                                  f"{notice.state}", status=409)
        await audit.record(session, actor=principal.name, action="notice.resend_requested",
                           subject=alert_id, reason=reason,
                           after={"notice_id": notice.notice_id, "contact_id": notice.contact_id,
                                  "channel": notice.channel},
                           key=f"{notice.notice_id}:resend:{now.isoformat()}")
    deps.kick(request)
    return RedirectResponse(f"/alerts/{alert_id}?resent={notice.notice_id}", status_code=303)
