"""Signed, expiring acknowledgement links: the notice id in a token, no login needed."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

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


class _IssuedAtSigner(TimestampSigner):
    """The signer ``serializer.make_signer()`` builds, signing with the time ``issued_at``
    instead of the clock's."""

    def __init__(self, serializer: URLSafeTimedSerializer, issued_at: datetime) -> None:
        super().__init__(serializer.secret_keys, salt=serializer.salt, **serializer.signer_kwargs)
        self._timestamp = int(issued_at.timestamp())

    def get_timestamp(self) -> int:
        return self._timestamp


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
        signer = _IssuedAtSigner(self._serializer, issued_at)
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
