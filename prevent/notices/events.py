"""A stored notice as its ``prevent.notices.v1`` event (the centre notifier's sends and a
contact's acknowledgement publish the same shape)."""

from __future__ import annotations

from datetime import datetime

from prevent.contracts import Notice, NoticeKind, NoticeState
from prevent.platform.storage.tables import NoticeRow


def notice_event(row: NoticeRow, state: NoticeState, error: str | None, at: datetime) -> Notice:
    return Notice(notice_id=row.notice_id, alert_id=row.alert_id, alert_revision=row.alert_revision,
                  site_id=row.site_id, contact_id=row.contact_id, channel=row.channel,
                  kind=NoticeKind(row.kind), state=state, language=row.language,
                  exercise=row.exercise, error=error, at=at)
