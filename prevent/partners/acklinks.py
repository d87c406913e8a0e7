"""Signed, expiring acknowledgement links: the notice id in a token, no login needed."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from prevent.platform.config import Settings

SALT = "prevent.notice-ack.v1"
DEFAULT_MAX_AGE = 14 * 24 * 3600


class InvalidLink(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "expired" or "invalid"


def secret_key(settings: Settings) -> str:
    """The configured key, else one generated once and kept (git-ignored) under var/."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = Path(settings.var_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


class AckLinks:
    def __init__(self, key: str, base_url: str, max_age: int = DEFAULT_MAX_AGE) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt=SALT)
        self._base_url = base_url.rstrip("/")
        self.max_age = max_age

    @classmethod
    def from_settings(cls, settings: Settings) -> AckLinks:
        return cls(secret_key(settings), settings.public_base_url)

    def token(self, notice_id: str, issued_at: datetime | None = None) -> str:
        """``issued_at`` (the notice's creation) makes the token deterministic: every send
        and resend of a notice carries the same link, and it expires counting from then."""
        if issued_at is None:
            return self._serializer.dumps(notice_id)
        signer = self._serializer.make_signer()
        signer.get_timestamp = lambda: int(issued_at.timestamp())  # type: ignore[method-assign]
        return signer.sign(self._serializer.dump_payload(notice_id)).decode()

    def url(self, notice_id: str, issued_at: datetime | None = None) -> str:
        return f"{self._base_url}/ack/{self.token(notice_id, issued_at)}"

    def notice_id(self, token: str) -> str:
        try:
            value = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired as exc:
            raise InvalidLink("expired") from exc
        except BadSignature as exc:
            raise InvalidLink("invalid") from exc
        if not isinstance(value, str):
            raise InvalidLink("invalid")
        return value
