"""The words of an SMS notice, within SMS limits: GSM-7 texts are 160 characters in one
segment and 153 per segment when concatenated (extension characters such as ``€[]{}`` count
twice); anything outside GSM-7 is sent as UCS-2, 70 characters in one segment, 67 when
concatenated. Long texts are cut to ``sms_max_segments`` with the reply code and the
acknowledgement link always kept at the end. Used by the SMS channel and by the playbook
preview, which shows the text a contact would receive."""

from __future__ import annotations

import math
import re

from prevent.notices.channel import OutgoingNotice

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
ELLIPSIS = "..."  # "…" is not GSM-7 and would turn the whole text into UCS-2
TAIL = {"en": " Reply ACK {code} or confirm: {url}", "fr": " Répondez ACK {code} ou confirmez : {url}"}
EXERCISE_PREFIX = {"en": "EXERCISE: ", "fr": "EXERCICE : "}


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def segments(text: str) -> int:
    """How many SMS segments a text needs."""
    if is_gsm7(text):
        units, single, multi = sum(2 if c in GSM7_EXTENSION else 1 for c in text), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def fit(core: str, tail: str, max_segments: int) -> str:
    """``core + tail`` within ``max_segments``, shortening only the core (the tail is the
    acknowledgement instruction and must survive)."""
    if segments(core + tail) <= max_segments:
        return core + tail
    lo, hi = 0, len(core)
    while lo < hi:  # the longest prefix that still fits
        mid = (lo + hi + 1) // 2
        if segments(core[:mid].rstrip() + ELLIPSIS + tail) <= max_segments:
            lo = mid
        else:
            hi = mid - 1
    return (core[:lo].rstrip() + ELLIPSIS if lo else "") + tail


def sms_text(notice: OutgoingNotice, max_segments: int) -> str:
    lang = notice.language if notice.language in TAIL else "en"
    body = " ".join(line.strip() for line in notice.text.splitlines()
                    if line.strip() and (not notice.ack_url or notice.ack_url not in line))
    prefix = EXERCISE_PREFIX[lang] if notice.exercise else ""
    core = f"{prefix}{notice.subject}. {body}"
    return fit(core, TAIL[lang].format(code=notice.ack_code, url=notice.ack_url), max_segments)


def normalize_phone(phone: str) -> str:
    """E.164-like: a leading + kept, every other non-digit dropped."""
    digits = re.sub(r"\D", "", phone)
    return f"+{digits}" if phone.strip().startswith("+") else digits
