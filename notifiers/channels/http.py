"""What HTTP channels (SMS gateway, webhooks) share: the status-code policy and signatures.

One table decides every HTTP outcome, so SMS and webhooks cannot drift apart:
2xx delivered; 408, 409 (an idempotent request still in flight), 425, 429 and 5xx
are worth retrying; every other status (3xx included: redirects are not followed,
they would be a URL someone else chose) fails at once.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from prevent.notices.channel import SendResult

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
SIGNATURE_HEADER = "Prevent-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300


def result_for_status(status: int, what: str, ref: str | None = None) -> SendResult:
    if 200 <= status < 300:
        return SendResult.sent(ref)
    reason = f"{what} answered HTTP {status}"
    if status in RETRYABLE_STATUS or status >= 500:
        return SendResult.retry(reason)
    return SendResult.fail(reason)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (the Stripe scheme)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str | None, *,
           tolerance: int = SIGNATURE_TOLERANCE_SECONDS, now: float | None = None) -> bool:
    """Check a ``Prevent-Signature`` header: right key, right body, recent timestamp."""
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False  # an old signature replayed
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))
