"""The partner's acknowledgement page: GET /ack/{token} and its three forms.

The token in the URL is the capability (a signed, expiring notice id; no login).
Each form also carries a nonce signed with the same key and bound to the notice and
the form, so a cross-site POST that never loaded the page fails. Every response is
``Referrer-Policy: no-referrer`` (the token must not leak to other sites) and
``Cache-Control: no-store``. An expired or tampered token gets a clear page and
nothing is recorded.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer

from notifiers.centre import OFFICER
from prevent.partners import acks
from prevent.partners.acklinks import AckLinks, InvalidLink, secret_key
from prevent.platform.storage.tables import Contact, NoticeRow, Site
from prevent.web import deps, render

router = APIRouter()
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
render.install_filters(TEMPLATES)  # times in the unit's zone, as on every console page
NONCE_SALT = "prevent.ack-form.v1"
NONCE_MAX_AGE = 24 * 3600
HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
           "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}

TEXT = {
    "en": {
        "title": "Notice", "ack": "I have received this notice", "acked": "Thank you",
        "acked_body": "Your acknowledgement is recorded. The community engagement unit can see it.",
        "replay": "This notice was already acknowledged on {when}. Nothing more to do.",
        "prefs": "How we reach you", "language": "Language", "channels": "Channels",
        "opt_out": "Stop sending me notices (opt out)", "save": "Save preferences",
        "saved": "Your preferences are saved.", "opted_out": "You will receive no more notices.",
        "report": "Report a concern at your site", "urgent": "Urgent",
        "describe": "Describe what is happening",
        "send": "Send report", "reported": "Thank you: your report reached the duty inspector's queue. "
        "In an emergency, call 911.",
        "expired": "This link has expired", "expired_body": "Acknowledgement links are valid for a "
        "limited time. If you need to reach the community engagement unit, please call them.",
        "invalid": "This link is not valid", "invalid_body": "The link is incomplete or was altered. "
        "Please open the link exactly as it appears in the notice.",
        "stale": "This form has expired or did not come from this page. Please reload and try again.",
    },
    "fr": {
        "title": "Avis", "ack": "J'ai bien reçu cet avis", "acked": "Merci",
        "acked_body": "Votre accusé de réception est enregistré. L'unité de liaison communautaire le voit.",
        "replay": "Cet avis a déjà été confirmé le {when}. Rien d'autre à faire.",
        "prefs": "Comment vous joindre", "language": "Langue", "channels": "Canaux",
        "opt_out": "Ne plus m'envoyer d'avis (désinscription)", "save": "Enregistrer",
        "saved": "Vos préférences sont enregistrées.", "opted_out": "Vous ne recevrez plus d'avis.",
        "report": "Signaler une inquiétude à votre site", "urgent": "Urgent",
        "describe": "Décrivez ce qui se passe",
        "send": "Envoyer", "reported": "Merci : votre signalement est parvenu à l'officier de service. "
        "En cas d'urgence, composez le 911.",
        "expired": "Ce lien a expiré", "expired_body": "Les liens de confirmation sont valables pour "
        "une durée limitée. Pour joindre l'unité de liaison communautaire, appelez-la.",
        "invalid": "Ce lien n'est pas valide", "invalid_body": "Le lien est incomplet ou a été modifié. "
        "Ouvrez le lien exactement tel qu'il figure dans l'avis.",
        "stale": "Ce formulaire a expiré ou ne vient pas de cette page. Rechargez et réessayez.",
    },
}


def _t(language: str) -> dict[str, str]:
    return TEXT.get(language, TEXT["en"])


def _nonces(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key(deps.settings(request)), salt=NONCE_SALT)


def _nonce(request: Request, notice_id: str, form: str) -> str:
    return _nonces(request).dumps([notice_id, form])


def _nonce_ok(request: Request, value: object, notice_id: str, form: str) -> bool:
    try:
        signed: object = _nonces(request).loads(str(value or ""), max_age=NONCE_MAX_AGE)
        return signed == [notice_id, form]
    except BadSignature:
        return False


def _page(request: Request, name: str, context: dict[str, object], status: int = 200) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status, headers=HEADERS)


def _message(request: Request, language: str, title: str, body: str, status: int = 200) -> HTMLResponse:
    return _page(request, "ack_message.html", {"lang": language, "heading": title, "body": body},
                 status)


async def _resolve(request: Request, token: str) -> NoticeRow | HTMLResponse:
    """The notice the token names, or the page explaining why there is none."""
    try:
        notice_id = AckLinks.from_settings(deps.settings(request)).notice_id(token)
    except InvalidLink as exc:
        t = _t("en")
        if exc.reason == "expired":
            return _message(request, "en", t["expired"], t["expired_body"], 410)
        return _message(request, "en", t["invalid"], t["invalid_body"], 400)
    async with deps.db(request).transaction() as session:
        notice = await session.get(NoticeRow, notice_id)
    if notice is None or notice.contact_id == OFFICER:
        t = _t("en")
        return _message(request, "en", t["invalid"], t["invalid_body"], 404)
    return notice


async def _show(request: Request, token: str, notice: NoticeRow, *, flash: str | None = None,
                error: str | None = None, status: int = 200) -> HTMLResponse:
    async with deps.db(request).transaction() as session:
        contact = await session.get(Contact, notice.contact_id)
        site = await session.get(Site, notice.site_id)
    reachable = [c for c, a in (("email", contact.email), ("sms", contact.phone),
                                ("webhook", contact.webhook_url)) if a] if contact else []
    return _page(request, "ack.html", {
        "lang": notice.language, "t": _t(notice.language), "notice": notice, "token": token,
        "site_name": site.name if site else "", "contact": contact, "reachable": reachable,
        "flash": flash, "error": error,
        "nonce": {f: _nonce(request, notice.notice_id, f) for f in ("ack", "prefs", "report")},
    }, status)


@router.get("/ack/{token}", response_class=HTMLResponse)
async def ack_page(request: Request, token: str) -> HTMLResponse:
    notice = await _resolve(request, token)
    if isinstance(notice, HTMLResponse):
        return notice
    return await _show(request, token, notice)


@router.post("/ack/{token}", response_class=HTMLResponse)
async def acknowledge(request: Request, token: str) -> HTMLResponse:
    notice = await _resolve(request, token)
    if isinstance(notice, HTMLResponse):
        return notice
    t = _t(notice.language)
    if not _nonce_ok(request, (await request.form()).get("nonce"), notice.notice_id, "ack"):
        return await _show(request, token, notice, error=t["stale"], status=403)
    async with deps.db(request).transaction() as session:
        outcome = await acks.acknowledge(session, notice.notice_id, via="link")
    deps.kick(request)
    when = outcome.notice.acknowledged_at
    body = t["acked_body"] if outcome.newly else t["replay"].format(
        when=render.local_text(when, render.time_zone(request)))  # the unit's zone, as pages
    return _message(request, notice.language, t["acked"], body)


@router.post("/ack/{token}/preferences", response_class=HTMLResponse)
async def preferences(request: Request, token: str) -> HTMLResponse:
    notice = await _resolve(request, token)
    if isinstance(notice, HTMLResponse):
        return notice
    t = _t(notice.language)
    form = await request.form()
    if not _nonce_ok(request, form.get("nonce"), notice.notice_id, "prefs"):
        return await _show(request, token, notice, error=t["stale"], status=403)
    opt_out = form.get("opt_out") == "yes"
    try:
        async with deps.db(request).transaction() as session:
            contact = await acks.update_preferences(
                session, notice, language=str(form.get("language", "")),
                channels=[str(c) for c in form.getlist("channels")], opt_out=opt_out)
    except acks.InvalidInput as exc:
        return await _show(request, token, notice, error=str(exc), status=422)
    deps.kick(request)
    t = _t(contact.language)
    return _message(request, contact.language, t["prefs"], t["opted_out"] if opt_out else t["saved"])


@router.post("/ack/{token}/report", response_class=HTMLResponse)
async def report(request: Request, token: str) -> HTMLResponse:
    notice = await _resolve(request, token)
    if isinstance(notice, HTMLResponse):
        return notice
    t = _t(notice.language)
    form = await request.form()
    if not _nonce_ok(request, form.get("nonce"), notice.notice_id, "report"):
        return await _show(request, token, notice, error=t["stale"], status=403)
    try:
        async with deps.db(request).transaction() as session:
            await acks.report_concern(session, notice, text=str(form.get("text", "")),
                                      urgent=form.get("urgent") == "yes")
    except acks.InvalidInput as exc:
        return await _show(request, token, notice, error=str(exc), status=422)
    deps.kick(request)
    return _message(request, notice.language, t["report"], t["reported"])
