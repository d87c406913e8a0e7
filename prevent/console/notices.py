"""GET /notices/{notice_id}.cap.xml: a notice as its CAP 1.2 document.

Needs a principal (any role, prevent.auth). The document holds no contact details and
no acknowledgement link.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from prevent.auth import current_principal
from prevent.console import deps
from prevent.storage.tables import NoticeRow
from prevent.users import Principal

router = APIRouter()


@router.get("/notices/{notice_id}.cap.xml")
async def notice_cap(request: Request, notice_id: str,
                     _p: Principal = Depends(current_principal)) -> Response:
    async with deps.db(request).transaction() as session:
        notice = await session.get(NoticeRow, notice_id)
    if notice is None or not notice.cap_xml:
        raise HTTPException(404, "no such notice")
    return Response(notice.cap_xml, media_type="application/xml", headers={
        "Content-Disposition": f'attachment; filename="{notice_id}.cap.xml"'})
