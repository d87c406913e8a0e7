"""Evaluating playbooks: each playbook compiled once into named predicates.

Plain Python predicates rather than a rule interpreter: faster, and each rule's
name doubles as its explanation (``prevent playbooks explain``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from prevent.playbooks.loader import PlaybookSet
from prevent.playbooks.schema import ANY_COMMUNITY, Match, Playbook


class Subject(NamedTuple):
    """What a playbook looks at: a classified incident (or cluster). A tuple, not a frozen
    dataclass: one is built for every grouped report, and a tuple costs a third to build."""

    communities: frozenset[str]
    incident_type: str
    severity: int
    country: str | None
    text: str
    published: datetime
    kind: str = ""  # the kind of source (FeedKind value); "" when unknown
    backlash: frozenset[str] = frozenset()  # communities at risk of backlash, not targeted
    worship: bool = False  # a place of worship, its clergy or a religious gathering was hit


def subject_of_classification(c: Any, text: str, published: datetime, kind: str = "") -> Subject:
    """The Subject of a classification (``prevent.classification.Classification``) and the
    item's text, as every caller builds it."""
    return Subject(frozenset(c.communities), c.incident_type, c.severity, c.country, text.casefold(),
                   published, kind, frozenset(c.backlash), c.worship)


def role_communities(role: str, s: Subject) -> frozenset[str]:
    """The communities a playbook's ``communities.role`` tests."""
    if role == "targeted":
        return s.communities
    if role == "backlash":
        return s.backlash
    return s.communities | s.backlash


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    detail: str


Predicate = Callable[[Subject, datetime], RuleResult]


def _communities(match: Match) -> Predicate:
    any_of = frozenset(match.communities.any)
    all_of = frozenset(match.communities.all)
    role = match.communities.role

    def rule(s: Subject, _now: datetime) -> RuleResult:
        have = role_communities(role, s)
        ok = (not any_of or ANY_COMMUNITY in any_of or bool(any_of & have)) and all_of <= have
        want = f"any of {sorted(any_of)}" if any_of else f"all of {sorted(all_of)}"
        what = {"targeted": "targets", "backlash": "puts at risk of backlash",
                "either": "targets or puts at risk"}[role]
        return RuleResult("communities", ok, f"incident {what} {sorted(have)}; needs {want}")
    return rule


def _worship(match: Match) -> Predicate:
    need = match.place_of_worship

    def rule(s: Subject, _now: datetime) -> RuleResult:
        ok = need == "any" or (need == "required") == s.worship
        hit = "a place of worship, clergy or worshippers hit" if s.worship else "no place of worship hit"
        return RuleResult("place_of_worship", ok, f"{hit}; needs {need}")
    return rule


def _types(match: Match) -> Predicate:
    types = frozenset(match.incident_types)

    def rule(s: Subject, _now: datetime) -> RuleResult:
        ok = not types or s.incident_type in types
        return RuleResult("incident_types", ok, f"type {s.incident_type}; allowed {sorted(types) or 'any'}")
    return rule


def _severity(match: Match) -> Predicate:
    def rule(s: Subject, _now: datetime) -> RuleResult:
        return RuleResult("min_severity", s.severity >= match.min_severity,
                          f"severity {s.severity}; needs >= {match.min_severity}")
    return rule


def _countries(match: Match) -> Predicate:
    include = frozenset(c.upper() for c in match.countries.include)
    exclude = frozenset(c.upper() for c in match.countries.exclude)

    def rule(s: Subject, _now: datetime) -> RuleResult:
        c = (s.country or "").upper()
        ok = (not include or c in include) and c not in exclude
        return RuleResult("countries", ok, f"country {c or 'unknown'}")
    return rule


def _terms_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = "|".join(re.escape(t.casefold()) for t in terms)
    return re.compile(rf"\b(?:{alternatives})\b")


def _keywords(match: Match) -> Predicate:
    any_re = _terms_pattern(match.keywords.any)
    none_re = _terms_pattern(match.keywords.none)

    def rule(s: Subject, _now: datetime) -> RuleResult:
        hit_any = any_re.search(s.text) if any_re else None
        hit_none = none_re.search(s.text) if none_re else None
        ok = (any_re is None or hit_any is not None) and hit_none is None
        detail = (f"excluded by '{hit_none.group(0)}'" if hit_none
                  else f"found '{hit_any.group(0)}'" if hit_any
                  else "no required keyword" if any_re else "no keyword rules")
        return RuleResult("keywords", ok, detail)
    return rule


def _age(match: Match) -> Predicate:
    limit = timedelta(hours=match.max_age_hours) if match.max_age_hours else None

    def rule(s: Subject, now: datetime) -> RuleResult:
        age = now - s.published
        ok = limit is None or age <= limit
        return RuleResult("max_age_hours", ok, f"age {age.total_seconds() / 3600:.1f} h")
    return rule


def _active(match: Match) -> Predicate:
    periods = match.active

    def rule(_s: Subject, now: datetime) -> RuleResult:
        today = now.date()
        hit = next((p for p in periods if p.start <= today <= p.end), None)
        ok = not periods or hit is not None
        detail = f"within {hit.label or hit.start}" if hit else ("always" if not periods else
                                                                  "outside every active period")
        return RuleResult("active", ok, detail)
    return rule


def _sources(match: Match) -> Predicate:
    kinds = frozenset(match.sources)

    def rule(s: Subject, _now: datetime) -> RuleResult:
        return RuleResult("sources", not kinds or s.kind in kinds,
                          f"source {s.kind or 'unknown'}; allowed {sorted(kinds) or 'any'}")
    return rule


RULE_BUILDERS = (_communities, _types, _severity, _countries, _keywords, _age, _active, _sources,
                 _worship)


def fast_test(match: Match) -> Callable[[Subject, datetime], bool]:
    """The same rules as ``RULE_BUILDERS`` as one boolean closure, for the hot path:
    no explanation strings are built for the thousands of incidents that do not match.
    ``test_fast_path_agrees_with_explain`` keeps the two in step."""
    any_of = frozenset(match.communities.any)
    all_of = frozenset(match.communities.all)
    any_community = not any_of or ANY_COMMUNITY in any_of
    types = frozenset(match.incident_types)
    include = frozenset(c.upper() for c in match.countries.include)
    exclude = frozenset(c.upper() for c in match.countries.exclude)
    any_re = _terms_pattern(match.keywords.any)
    none_re = _terms_pattern(match.keywords.none)
    limit = timedelta(hours=match.max_age_hours) if match.max_age_hours else None
    active = _active(match) if match.active else None
    kinds = frozenset(match.sources)
    role = match.communities.role
    worship = match.place_of_worship

    def test(s: Subject, now: datetime) -> bool:
        if kinds and s.kind not in kinds:
            return False
        if s.severity < match.min_severity or (types and s.incident_type not in types):
            return False
        have = s.communities if role == "targeted" else role_communities(role, s)
        if not (any_community or any_of & have) or not all_of <= have:
            return False
        if worship != "any" and (worship == "required") != s.worship:
            return False
        country = (s.country or "").upper()
        if (include and country not in include) or country in exclude:
            return False
        if limit is not None and now - s.published > limit:
            return False
        if active is not None and not active(s, now).passed:
            return False
        if any_re is not None and any_re.search(s.text) is None:
            return False
        return none_re is None or none_re.search(s.text) is None
    return test


@dataclass(frozen=True)
class CompiledPlaybook:
    playbook: Playbook
    version: int
    predicates: tuple[Predicate, ...]
    test: Callable[[Subject, datetime], bool]

    def explain(self, subject: Subject, now: datetime) -> list[RuleResult]:
        return [p(subject, now) for p in self.predicates]

    def matches(self, subject: Subject, now: datetime) -> bool:
        return self.test(subject, now)


CANDIDATE_SETS_KEPT = 4096


class CompiledSet:
    """Playbooks indexed by community, so an incident only meets playbooks that could match."""

    def __init__(self, playbooks: PlaybookSet) -> None:
        self.source = playbooks
        self.compiled = tuple(
            CompiledPlaybook(p, playbooks.version_of(p.id), tuple(b(p.match) for b in RULE_BUILDERS),
                             fast_test(p.match))
            for p in playbooks.playbooks
        )
        self._by_community: dict[str, list[CompiledPlaybook]] = {}
        for cp in self.compiled:
            for community in {*cp.playbook.match.communities.any, *cp.playbook.match.communities.all}:
                self._by_community.setdefault(community, []).append(cp)
        self._candidates: dict[frozenset[str], tuple[CompiledPlaybook, ...]] = {}

    def candidates(self, communities: frozenset[str]) -> tuple[CompiledPlaybook, ...]:
        # A burst repeats a few sets of communities thousands of times: each is worked out once.
        found = self._candidates.get(communities)
        if found is None:
            seen: dict[str, CompiledPlaybook] = {}
            for c in (*communities, ANY_COMMUNITY):
                for cp in self._by_community.get(c, ()):
                    seen.setdefault(cp.playbook.id, cp)
            found = tuple(sorted(seen.values(), key=lambda cp: (-cp.playbook.priority, cp.playbook.id)))
            if len(self._candidates) < CANDIDATE_SETS_KEPT:
                self._candidates[communities] = found
        return found

    def matching(self, subject: Subject, now: datetime) -> list[CompiledPlaybook]:
        communities = subject.communities | subject.backlash if subject.backlash else subject.communities
        return [cp for cp in self.candidates(communities) if cp.test(subject, now)]
