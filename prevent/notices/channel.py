"""The one protocol every channel implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutgoingNotice:
    notice_id: str
    address: str  # email address, phone number or webhook URL: never logged
    subject: str
    text: str
    html: str
    language: str
    exercise: bool
    payload: dict[str, object] = field(default_factory=dict)  # JSON body for webhooks
    cap_xml: str | None = None
    ack_url: str = ""
    ack_code: str = ""  # SMS recipients reply "ACK <code>"
    webhook_format: str = "json"  # json | cap (a contact flag)


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retryable: bool = False
    error: str | None = None
    provider_ref: str | None = None

    @classmethod
    def sent(cls, ref: str | None = None) -> SendResult:
        return cls(ok=True, provider_ref=ref)

    @classmethod
    def retry(cls, error: str) -> SendResult:
        return cls(ok=False, retryable=True, error=error)

    @classmethod
    def fail(cls, error: str) -> SendResult:
        return cls(ok=False, retryable=False, error=error)


class Channel(Protocol):
    name: str

    async def send(self, notice: OutgoingNotice) -> SendResult: ...
