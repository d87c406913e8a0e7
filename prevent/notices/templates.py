"""Rendering notices from the playbook's Jinja2 templates, in the contact's language.

Templates live in ``playbooks/templates/NAME.LANG.j2``; the first line is
``Subject: ...``, then a blank line, then the body. A missing language falls back
to English, a missing template to ``default``. The sandbox keeps templates, which
engagement officers edit, from reaching into Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from prevent.platform.config import get_settings
from prevent.platform.unittime import TIME_FORMAT, local_text

FALLBACK_LANGUAGE = "en"
FALLBACK_TEMPLATE = "default"
# C0 and C1 control characters (and the line and paragraph separators): a subject is one
# header line, so every one of them becomes a space there ("\r\nBcc:" in an alert title
# cannot add a header, and cannot make the email library refuse the message either).
_SUBJECT_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# In a body, line breaks and tabs are text; other control characters are dropped.
_BODY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """``text`` fit for a header: control characters as single spaces, no runs of spaces."""
    return " ".join(_SUBJECT_CONTROLS.sub(" ", text).split())


def clean_body(text: str) -> str:
    return _BODY_CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    language: str


def text_to_html(text: str, language: str) -> str:
    """The HTML part of a notice: the same text, paragraphs kept, everything escaped."""
    paragraphs = "".join(f"<p>{escape(p).replace(chr(10), Markup('<br>'))}</p>"
                         for p in text.split("\n\n") if p.strip())
    return f'<!doctype html><html lang="{language}"><body>{paragraphs}</body></html>'


class NoticeRenderer:
    def __init__(self, directory: Path, time_zone: str | None = None) -> None:
        self.env = SandboxedEnvironment(loader=FileSystemLoader(str(directory)),
                                        undefined=StrictUndefined, autoescape=False,
                                        keep_trailing_newline=True)
        # A time in a notice reads as on the console: the unit's zone, one format
        # (``{{ alert.created_at | localtime }}`` → "2026-07-01 12:30 EDT").
        self.time_zone = time_zone or get_settings().time_zone
        self.env.filters["localtime"] = lambda value, fmt=TIME_FORMAT: local_text(
            value, self.time_zone, fmt)

    def _template(self, name: str, language: str) -> tuple[Any, str]:
        for candidate, lang in ((name, language), (name, FALLBACK_LANGUAGE),
                                (FALLBACK_TEMPLATE, language), (FALLBACK_TEMPLATE, FALLBACK_LANGUAGE)):
            try:
                return self.env.get_template(f"{candidate}.{lang}.j2"), lang
            except TemplateNotFound:
                continue
        raise TemplateNotFound(f"{name}.{language}.j2 (and the fallbacks)")

    def render(self, name: str, language: str, context: dict[str, Any]) -> Rendered:
        template, lang = self._template(name, language)
        out = template.render(**context)
        head, _, body = out.partition("\n\n")
        if not head.startswith("Subject:"):
            raise ValueError(f"template {name}.{lang}.j2 must start with a 'Subject:' line")
        subject = one_line(head.removeprefix("Subject:"))
        text = clean_body(body).strip() + "\n"
        return Rendered(subject=subject, text=text, html=text_to_html(text, lang), language=lang)

    def check(self, name: str, languages: tuple[str, ...] = ("en", "fr")) -> list[str]:
        problems = []
        for lang in languages:
            try:
                self.env.get_template(f"{name}.{lang}.j2")
            except TemplateNotFound:
                problems.append(f"template {name}.{lang}.j2 is missing")
            except Exception as exc:  # noqa: BLE001 - report any template syntax error
                problems.append(f"template {name}.{lang}.j2: {exc}")
        return problems
