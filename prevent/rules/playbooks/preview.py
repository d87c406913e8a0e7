"""The notice a playbook would send, rendered with its real templates (``NoticeRenderer``, as
the centre notifier renders them) for a sample site, in each language its templates exist in,
per channel: what the editor shows before a save and the playbook page shows for a version.

Only fictional data is ever shown, whatever the reader's role: a site of the registry is used
only when it is one of the demo's sample sites, unchanged (same id and name as in
``prevent/platform/demo/partners.yaml``), with a sample contact whose stored name is the sample's;
otherwise a built-in fictional example. Real sites and contacts never reach this page.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import Alert, AlertStatus, NoticeKind, utcnow
from prevent.notices.channel import OutgoingNotice
from prevent.notices.sms_text import sms_text
from prevent.notices.templates import FALLBACK_TEMPLATE, NoticeRenderer
from prevent.notices.wording import SEVERITY_LABELS, ack_code_for
from prevent.platform.demo import SAMPLE_PARTNERS
from prevent.platform.storage.tables import Contact, Site
from prevent.rules.playbooks.schema import MATCHED, Playbook

SAMPLE_NOTICE_ID = "ntc-sample-preview"
SAMPLE_ACK_URL = "https://console.example.org/ack/SAMPLE-LINK"  # not a working link


@dataclass(frozen=True)
class SampleSite:
    site_id: str
    name: str
    municipality: str
    communities: tuple[str, ...]
    contact_name: str
    from_registry: bool


BUILT_IN = SampleSite("example-site", "Example Community Centre (sample)", "Sampletown", (),
                      "Alex Example", False)


@dataclass(frozen=True)
class RenderedNotice:
    channel: str
    language: str  # the language asked for
    rendered_language: str  # the template's (a missing one falls back to English)
    subject: str
    body: str
    error: str = ""


@dataclass
class Preview:
    site: SampleSite
    alert_title: str
    templates: list[str] = field(default_factory=list)
    notices: list[RenderedNotice] = field(default_factory=list)

    @property
    def languages(self) -> list[str]:
        return sorted({n.language for n in self.notices})


@functools.lru_cache(maxsize=1)
def _sample_sites() -> tuple[dict[str, Any], ...]:
    try:
        data = yaml.safe_load(SAMPLE_PARTNERS.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ()
    return tuple(s for s in data.get("sites") or () if isinstance(s, dict) and s.get("site_id"))


def _wanted_communities(playbook: Playbook) -> set[str]:
    wanted = set(playbook.match.communities.any) | set(playbook.match.communities.all)
    for audience in playbook.response.notify:
        wanted |= {c for c in audience.communities if c != MATCHED}
    return wanted


async def sample_site(session: AsyncSession, playbook: Playbook) -> SampleSite:
    """A fictional sample site of the registry whose communities the playbook names (or, for a
    playbook with a kind of site, of that kind); else the built-in example."""
    wanted = _wanted_communities(playbook)
    kinds = {k for a in playbook.response.notify for k in a.site_kinds}
    for sample in _sample_sites():
        communities = tuple(sample.get("communities") or ())
        if wanted and not wanted & set(communities):
            continue
        if kinds and sample.get("kind") not in kinds:
            continue
        stored = await session.get(Site, str(sample["site_id"]))
        if stored is None or stored.name != sample.get("name"):
            continue  # not in the registry, or no longer the fictional sample: in doubt
        contact_name = ""
        for contact in sample.get("contacts") or ():
            row = await session.get(Contact, str(contact.get("contact_id")))
            if row is not None and row.name == contact.get("name") and row.site_id == stored.site_id:
                contact_name = row.name
                break
        return SampleSite(stored.site_id, stored.name, stored.municipality, communities,
                          contact_name or BUILT_IN.contact_name, True)
    return BUILT_IN


def template_languages(templates_dir: Path, name: str) -> list[str]:
    """The languages ``name`` exists in (``name.LANG.j2``); those of ``default`` if none."""
    for candidate in (name, FALLBACK_TEMPLATE):
        found = sorted(p.name[len(candidate) + 1:-3] for p in templates_dir.glob(f"{candidate}.*.j2")
                       if "." not in p.name[len(candidate) + 1:-3])
        if found:
            return found
    return ["en"]


def sample_alert(playbook: Playbook, version: int, site: SampleSite) -> Alert:
    now = utcnow()
    communities = tuple(sorted(_wanted_communities(playbook) & set(site.communities))) or tuple(
        playbook.match.communities.any or playbook.match.communities.all)
    incident_type = (playbook.match.incident_types or ("incident",))[0]
    title = f"Sample event: {incident_type.replace('_', ' ')} (example for a preview)"
    return Alert(alert_id="alr-sample-preview", cluster_id="sample", incident_ids=("sample",),
                 playbook_id=playbook.id, playbook_version=version, status=AlertStatus.PROPOSED,
                 revision=1, severity=max(playbook.match.min_severity, 2), communities=communities,
                 incident_type=incident_type, title=title, created_at=now, updated_at=now)


def render_preview(playbook: Playbook, version: int, site: SampleSite, templates_dir: Path, *,
                   time_zone: str | None = None, sms_max_segments: int = 3) -> Preview:
    """Each audience's template, in each language it exists in, per channel: subject and body
    as the notifier would send them (an SMS as the gateway receives its text)."""
    renderer = NoticeRenderer(templates_dir, time_zone)
    alert = sample_alert(playbook, version, site)
    preview = Preview(site, alert.title)
    values = {"alert": alert, "playbook": playbook, "kind": NoticeKind.INITIAL.value,
              "site_name": site.name, "contact_name": site.contact_name, "exercise": False,
              "severity_label": SEVERITY_LABELS.get(alert.severity, str(alert.severity)),
              "ack_url": SAMPLE_ACK_URL}
    seen: set[tuple[str, str]] = set()
    for audience in playbook.response.notify:
        if audience.template not in preview.templates:
            preview.templates.append(audience.template)
        for channel in audience.channels:
            if (audience.template, channel) in seen:
                continue
            seen.add((audience.template, channel))
            for language in template_languages(templates_dir, audience.template):
                preview.notices.append(_render(renderer, audience.template, channel, language,
                                               values, sms_max_segments))
    return preview


def _render(renderer: NoticeRenderer, template: str, channel: str, language: str, values: dict[str, Any],
            sms_max_segments: int) -> RenderedNotice:
    try:
        rendered = renderer.render(template, language, values)
    except Exception as exc:  # noqa: BLE001 - shown to the editor, as confirming would fail it
        return RenderedNotice(channel, language, language, "", "",
                              error=f"the notice could not be rendered: {type(exc).__name__}: {exc}")
    body = rendered.text
    if channel == "sms":
        body = sms_text(OutgoingNotice(
            notice_id=SAMPLE_NOTICE_ID, address="", subject=rendered.subject, text=rendered.text,
            html="", language=rendered.language, exercise=False, ack_url=SAMPLE_ACK_URL,
            ack_code=ack_code_for(SAMPLE_NOTICE_ID)), sms_max_segments)
    return RenderedNotice(channel, language, rendered.language, rendered.subject, body)
