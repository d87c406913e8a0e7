"""Email with aiosmtplib. The ``Message-ID`` is derived from the notice id, so a resend
after a crash carries the same id and the receiving side can tell it is the same notice."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from prevent.notices.channel import OutgoingNotice, SendResult
from prevent.platform.config import Settings
from prevent.platform.messaging import TransientError


def message_id(notice_id: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1] or "prevent.invalid"
    return f"<{notice_id}@{domain}>"


def build_message(notice: OutgoingNotice, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = notice.address
    msg["Subject"] = notice.subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id(notice.notice_id, sender)
    msg["X-Prevent-Notice-Id"] = notice.notice_id
    if notice.exercise:
        msg["X-Prevent-Exercise"] = "yes"
    msg.set_content(notice.text)
    msg.add_alternative(notice.html, subtype="html")
    # After the body: set_content() drops every Content-* header set before it.
    msg["Content-Language"] = notice.language
    return msg


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, notice: OutgoingNotice) -> SendResult:
        s = self.settings
        msg = build_message(notice, s.mail_from)
        try:
            await aiosmtplib.send(
                msg, hostname=s.smtp_host, port=s.smtp_port, start_tls=s.smtp_starttls,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                timeout=s.smtp_timeout_seconds,
            )
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPTimeoutError, ConnectionError, OSError) as exc:
            raise TransientError(f"SMTP server {s.smtp_host}:{s.smtp_port} unavailable: "
                                 f"{type(exc).__name__}") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [e.code for e in exc.recipients]
            reason = f"recipient refused ({', '.join(map(str, codes))})"
            return SendResult.retry(reason) if all(400 <= c < 500 for c in codes) else SendResult.fail(reason)
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.code}: {exc.message}"
            return SendResult.retry(reason) if 400 <= exc.code < 500 else SendResult.fail(reason)
        return SendResult.sent(message_id(notice.notice_id, s.mail_from))
