"""Words every notice shares, whoever sends or previews it: severity labels and the six-digit
code an SMS recipient types back."""

from __future__ import annotations

import hashlib

SEVERITY_LABELS = {0: "none", 1: "minor", 2: "serious", 3: "grave", 4: "critical"}


def ack_code_for(notice_id: str) -> str:
    """Six digits an SMS recipient can type back; matched together with their number."""
    return f"{int(hashlib.sha256(notice_id.encode()).hexdigest(), 16) % 1_000_000:06d}"
