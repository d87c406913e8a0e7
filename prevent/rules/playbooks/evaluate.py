"""Evaluating playbooks: each playbook compiled once into named predicates.

Plain Python predicates rather than a rule interpreter: faster, and each rule's
name doubles as its explanation (``prevent playbooks explain``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, NamedTuple

from prevent.rules.playbooks.loader import PlaybookSet
from prevent.rules.playbooks.schema import ANY_COMMUNITY, Match, Playbook


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


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a playbook's match: ``test`` decides (every incident meets it), ``describe``
    says why (only when a playbook is explained: ``prevent playbooks explain``, backtests)."""

    name: str
    test: Callable[[Subject, datetime], bool]
    describe: Callable[[Subject, datetime], str]

    def __call__(self, s: Subject, now: datetime) -> RuleResult:
        return RuleResult(self.name, self.test(s, now), self.describe(s, now))


Predicate = Rule
_ROLE_WORDS = {"targeted": "targets", "backlash": "puts at risk of backlash",
               "either": "targets or puts at risk"}


def _communities(match: Match) -> Rule:
    any_of = frozenset(match.communities.any)
    all_of = frozenset(match.communities.all)
    any_community = not any_of or ANY_COMMUNITY in any_of
    role = match.communities.role
    want = f"any of {sorted(any_of)}" if any_of else f"all of {sorted(all_of)}"

    def test(s: Subject, _now: datetime) -> bool:
        have = role_communities(role, s)
        return (any_community or bool(any_of & have)) and all_of <= have

    def describe(s: Subject, _now: datetime) -> str:
        return f"incident {_ROLE_WORDS[role]} {sorted(role_communities(role, s))}; needs {want}"
    return Rule("communities", test, describe)


def _worship(match: Match) -> Rule:
    need = match.place_of_worship

    def test(s: Subject, _now: datetime) -> bool:
        return need == "any" or (need == "required") == s.worship

    def describe(s: Subject, _now: datetime) -> str:
        hit = "a place of worship, clergy or worshippers hit" if s.worship else "no place of worship hit"
        return f"{hit}; needs {need}"
    return Rule("place_of_worship", test, describe)


def _types(match: Match) -> Rule:
    types = frozenset(match.incident_types)

    def test(s: Subject, _now: datetime) -> bool:
        return not types or s.incident_type in types

    def describe(s: Subject, _now: datetime) -> str:
        return f"type {s.incident_type}; allowed {sorted(types) or 'any'}"
    return Rule("incident_types", test, describe)


def _severity(match: Match) -> Rule:
    least = match.min_severity

    def test(s: Subject, _now: datetime) -> bool:
        return s.severity >= least

    def describe(s: Subject, _now: datetime) -> str:
        return f"severity {s.severity}; needs >= {least}"
    return Rule("min_severity", test, describe)


def _countries(match: Match) -> Rule:
    include = frozenset(c.upper() for c in match.countries.include)
    exclude = frozenset(c.upper() for c in match.countries.exclude)

    def test(s: Subject, _now: datetime) -> bool:
        c = (s.country or "").upper()
        return (not include or c in include) and c not in exclude

    def describe(s: Subject, _now: datetime) -> str:
        return f"country {(s.country or '').upper() or 'unknown'}"
    return Rule("countries", test, describe)


def _terms_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternatives = "|".join(re.escape(t.casefold()) for t in terms)
    return re.compile(rf"\b(?:{alternatives})\b")


def _keywords(match: Match) -> Rule:
    any_re = _terms_pattern(match.keywords.any)
    none_re = _terms_pattern(match.keywords.none)

    def test(s: Subject, _now: datetime) -> bool:
        return ((any_re is None or any_re.search(s.text) is not None)
                and (none_re is None or none_re.search(s.text) is None))

    def describe(s: Subject, _now: datetime) -> str:
        hit_any = any_re.search(s.text) if any_re else None
        hit_none = none_re.search(s.text) if none_re else None
        return (f"excluded by '{hit_none.group(0)}'" if hit_none
                else f"found '{hit_any.group(0)}'" if hit_any
                else "no required keyword" if any_re else "no keyword rules")
    return Rule("keywords", test, describe)


def _age(match: Match) -> Rule:
    limit = timedelta(hours=match.max_age_hours) if match.max_age_hours else None

    def test(s: Subject, now: datetime) -> bool:
        return limit is None or now - s.published <= limit

    def describe(s: Subject, now: datetime) -> str:
        return f"age {(now - s.published).total_seconds() / 3600:.1f} h"
    return Rule("max_age_hours", test, describe)


def _active(match: Match) -> Rule:
    periods = match.active

    def period(now: datetime) -> Any:
        today = now.date()
        return next((p for p in periods if p.start <= today <= p.end), None)

    def test(_s: Subject, now: datetime) -> bool:
        return not periods or period(now) is not None

    def describe(_s: Subject, now: datetime) -> str:
        hit = period(now)
        return f"within {hit.label or hit.start}" if hit else ("always" if not periods else
                                                                "outside every active period")
    return Rule("active", test, describe)


def _sources(match: Match) -> Rule:
    kinds = frozenset(match.sources)

    def test(s: Subject, _now: datetime) -> bool:
        return not kinds or s.kind in kinds

    def describe(s: Subject, _now: datetime) -> str:
        return f"source {s.kind or 'unknown'}; allowed {sorted(kinds) or 'any'}"
    return Rule("sources", test, describe)


RULE_BUILDERS = (_communities, _types, _severity, _countries, _keywords, _age, _active, _sources,
                 _worship)
_TEST_ORDER = ("sources", "min_severity", "incident_types", "communities", "place_of_worship",
               "countries", "max_age_hours", "active", "keywords")


@dataclass(frozen=True)
class CompiledPlaybook:
    playbook: Playbook
    version: int
    predicates: tuple[Predicate, ...]  # in the order explanations list them

    def explain(self, subject: Subject, now: datetime) -> list[RuleResult]:
        return [p(subject, now) for p in self.predicates]

    @cached_property
    def _tests(self) -> tuple[Callable[[Subject, datetime], bool], ...]:
        # Tested cheapest first, the keyword expressions last.
        return tuple(r.test for r in sorted(self.predicates, key=lambda r: _TEST_ORDER.index(r.name)))

    def matches(self, subject: Subject, now: datetime) -> bool:
        """Every rule passes (stopping at the first that does not)."""
        return all(test(subject, now) for test in self._tests)


CANDIDATE_SETS_KEPT = 4096


class CompiledSet:
    """Playbooks indexed by community, so an incident only meets playbooks that could match."""

    def __init__(self, playbooks: PlaybookSet) -> None:
        self.source = playbooks
        self.compiled = tuple(
            CompiledPlaybook(p, playbooks.version_of(p.id), tuple(b(p.match) for b in RULE_BUILDERS))
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
        return [cp for cp in self.candidates(communities) if cp.matches(subject, now)]
