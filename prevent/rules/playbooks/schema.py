"""The playbook language. Playbooks are data written by engagement officers, validated here.

Strict on purpose (``extra="forbid"``): a misspelt key is an error with file and line,
never a silently ignored rule.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MATCHED = "$matched"  # in notify.communities: the communities the incident matched
ANY_COMMUNITY = "*"  # in match.communities.any: no community needed; in notify: every site


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommunityMatch(Strict):
    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    # Which of an incident's communities these are tested against: those it targets
    # (default), those at risk of backlash for it (the community a perpetrator claimed to
    # act for, the other side of a conflict), or either.
    role: Literal["targeted", "backlash", "either"] = "targeted"

    @model_validator(mode="after")
    def _not_empty(self) -> CommunityMatch:
        if not self.any and not self.all:
            raise ValueError("give communities in 'any' or 'all'")
        return self


class CountryMatch(Strict):
    include: tuple[str, ...] = Field(default=(), description="ISO alpha-2; empty = anywhere")
    exclude: tuple[str, ...] = ()


class KeywordMatch(Strict):
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()


class ActivePeriod(Strict):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    label: str = ""


class Match(Strict):
    communities: CommunityMatch
    incident_types: tuple[str, ...] = Field(default=(), description="empty = any type")
    min_severity: int = Field(default=2, ge=0, le=4)
    countries: CountryMatch = CountryMatch()
    keywords: KeywordMatch = KeywordMatch()
    max_age_hours: float | None = Field(default=72, gt=0)
    active: tuple[ActivePeriod, ...] = Field(default=(), description="empty = always active")
    sources: tuple[Literal["rss", "atom", "rdf", "cap", "geojson", "threat_level", "partner_report"],
                   ...] = Field(default=(), description="kinds of source; empty = any")
    place_of_worship: Literal["any", "required", "absent"] = Field(
        default="any", description="whether the incident must (or must not) have hit a place of "
        "worship, its clergy or a religious gathering (the classification's `worship`)")


class Confirmation(Strict):
    mode: Literal["required", "auto"] = "required"
    auto_at_severity: int | None = Field(default=None, ge=0, le=4,
                                         description="auto-confirm at or above this severity")

    def auto_confirms(self, severity: int) -> bool:
        if self.mode == "auto":
            return self.auto_at_severity is None or severity >= self.auto_at_severity
        return self.auto_at_severity is not None and severity >= self.auto_at_severity


class Audience(Strict):
    communities: tuple[str, ...] = (MATCHED,)
    reporting_site: bool = Field(
        default=False, description="only the partner site whose contact reported the concern "
        "(a partner_report in the alert's reports), whatever its communities")
    municipalities: tuple[str, ...] = Field(default=(), description="empty = every municipality")
    site_kinds: tuple[str, ...] = Field(default=(), description="empty = every kind of site")
    diasporas: bool = Field(
        default=True, description="with `$matched`: also the sites that serve the diaspora of the "
        "country or region the alert concerns (a disaster there, an attack on the homeland), "
        "whatever their communities; not for playbooks matching only communities at risk of backlash")
    channels: tuple[Literal["email", "sms", "webhook"], ...] = ("email",)
    template: str = "default"


class PatrolPlan(Strict):
    every_minutes: int = Field(default=120, gt=0)
    duration_hours: float = Field(default=72, gt=0)
    priority: Literal["low", "normal", "high", "critical"] = "normal"
    instructions: str = ""


class Response(Strict):
    confirmation: Confirmation = Confirmation()
    escalation_minutes: tuple[int, ...] = Field(default=(15, 30),
                                                description="escalation levels, minutes")
    notify: tuple[Audience, ...] = ()
    patrol: PatrolPlan | None = None
    ack_window_minutes: int | None = Field(default=None, gt=0)


class Playbook(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,80}$")
    title: str
    owner: str
    description: str = ""
    priority: int = Field(default=50, ge=0, le=100, description="higher inhibits lower")
    cooldown_minutes: int = Field(default=0, ge=0)
    match: Match
    response: Response
