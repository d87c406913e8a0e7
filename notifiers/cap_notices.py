"""Every notice as a CAP 1.2 ``alert`` (OASIS Common Alerting Protocol).

The document is built once, when the notice is planned, and stored with it, so the
download, the webhook and any resend carry the same bytes. It never contains the
acknowledgement link: the download is not the contact's capability to hold.

Mapping: identifier = notice id; status Exercise for exercises; msgType Alert for a
first notice, Update for a severity change and Cancel for an all-clear, both with
``references`` to the first notice; scope Restricted (partner centres only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from prevent.contracts import NoticeKind

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
RESTRICTION = "Partner centres of the police community engagement unit"
SEVERITY = {4: "Extreme", 3: "Severe", 2: "Moderate", 1: "Minor", 0: "Unknown"}
MSG_TYPE = {NoticeKind.INITIAL: "Alert", NoticeKind.UPDATE: "Update", NoticeKind.ALL_CLEAR: "Cancel"}


@dataclass(frozen=True)
class CapNotice:
    identifier: str
    sender: str
    sent: datetime
    kind: NoticeKind
    exercise: bool
    language: str
    event: str
    severity: int
    headline: str
    description: str
    instruction: str
    area_desc: str
    lat: float | None = None
    lon: float | None = None
    references: tuple[str, str, datetime] | None = None  # sender, identifier, sent of the first
    web: str | None = None


def cap_time(moment: datetime) -> str:
    """CAP's dateTime: seconds precision and an explicit offset ("Z" is not allowed)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def cap_document(n: CapNotice) -> str:
    ET.register_namespace("", CAP_NS)
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", n.identifier)
    _sub(alert, "sender", n.sender)
    _sub(alert, "sent", cap_time(n.sent))
    _sub(alert, "status", "Exercise" if n.exercise else "Actual")
    _sub(alert, "msgType", MSG_TYPE[n.kind])
    _sub(alert, "scope", "Restricted")
    _sub(alert, "restriction", RESTRICTION)
    if n.exercise:
        _sub(alert, "note", "EXERCISE - no action required")
    if n.references and n.kind is not NoticeKind.INITIAL:
        sender, identifier, sent = n.references
        _sub(alert, "references", f"{sender},{identifier},{cap_time(sent)}")
    info = _sub(alert, "info")
    _sub(info, "language", n.language)
    _sub(info, "category", "Security")
    _sub(info, "event", n.event)
    _sub(info, "responseType", "AllClear" if n.kind is NoticeKind.ALL_CLEAR else "Monitor")
    _sub(info, "urgency", "Past" if n.kind is NoticeKind.ALL_CLEAR
         else "Expected" if n.severity >= 3 else "Future")
    _sub(info, "severity", SEVERITY.get(n.severity, "Unknown"))
    _sub(info, "certainty", "Possible")
    _sub(info, "senderName", "Police community engagement unit")
    _sub(info, "headline", n.headline[:160])
    _sub(info, "description", n.description)
    _sub(info, "instruction", n.instruction)
    if n.web:
        _sub(info, "web", n.web)
    area = _sub(info, "area")
    _sub(area, "areaDesc", n.area_desc)
    if n.lat is not None and n.lon is not None:
        _sub(area, "circle", f"{n.lat:.5f},{n.lon:.5f} 0.5")  # 500 m around the site
    return ET.tostring(alert, encoding="unicode", xml_declaration=True) + "\n"
