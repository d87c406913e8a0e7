"""The playbook language: strict schema with file:line errors, rule-by-rule evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks.evaluate import CompiledSet, Subject
from prevent.rules.playbooks.loader import PlaybookSet, load_directory, parse_sources
from prevent.rules.playbooks.schema import Confirmation

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)

VALID = """\
id: test-playbook
title: Test
owner: tests
match:
  communities: {any: [jewish]}
  incident_types: [arson]
  min_severity: 2
  countries: {exclude: [CA]}
  keywords: {none: [exercise drill]}
response:
  notify:
    - channels: [email]
"""


def subject(**overrides: object) -> Subject:
    data = dict(communities=frozenset({"jewish"}), incident_type="arson", severity=2, country="FR",
                text="synagogue set on fire", published=NOW - timedelta(hours=1))
    return Subject(**(data | overrides))  # type: ignore[arg-type]


def compiled(text: str = VALID) -> CompiledSet:
    return CompiledSet(PlaybookSet(tuple(parse_sources([("t.yaml", text)])), {"test-playbook": 3}))


def test_starter_playbooks_are_valid() -> None:
    ids = {p.id for p in load_directory(REPO / "playbooks").playbooks}
    assert {"place-of-worship-attack", "hate-attack-diversity-community", "conflict-local-tension",
            "diaspora-disaster-welfare", "observance-elevated-risk", "threat-level-change"} <= ids


@pytest.mark.parametrize(("edit", "expected"), [
    (("min_severity: 2", "min_severity: high"), "t.yaml:7: match.min_severity"),
    (("  incident_types: [arson]", "  incident_types: [arson]\n  colour: red"), "t.yaml:7: match.colour"),
    (("owner: tests\n", ""), "t.yaml:1: owner: Field required"),
    (("id: test-playbook", "id: Test Playbook!"), "t.yaml:1: id"),
    (("    - channels: [email]", "    - channels: [pigeon]"), "t.yaml:12: response.notify.0.channels.0"),
    (("match:", "match: ["), "t.yaml:6: YAML syntax error"),
])
def test_errors_name_file_and_line(edit: tuple[str, str], expected: str) -> None:
    broken = VALID.replace(*edit)
    assert broken != VALID
    with pytest.raises(SourceError) as excinfo:
        parse_sources([("t.yaml", broken)])
    assert any(p.startswith(expected) for p in excinfo.value.problems), excinfo.value.problems


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(SourceError, match=r"also defined in a\.yaml"):
        parse_sources([("a.yaml", VALID), ("b.yaml", VALID)])


@pytest.mark.parametrize(("overrides", "failing_rule"), [
    ({}, None),
    ({"communities": frozenset({"muslim"})}, "communities"),
    ({"incident_type": "vandalism"}, "incident_types"),
    ({"severity": 1}, "min_severity"),
    ({"country": "CA"}, "countries"),
    ({"text": "exercise drill: synagogue set on fire"}, "keywords"),
    ({"published": NOW - timedelta(hours=100)}, "max_age_hours"),
])
def test_each_rule_explains_itself(overrides: dict, failing_rule: str | None) -> None:
    cp = compiled().compiled[0]
    results = cp.explain(subject(**overrides), NOW)
    failed = [r.rule for r in results if not r.passed]
    assert failed == ([failing_rule] if failing_rule else [])
    assert cp.matches(subject(**overrides), NOW) is (failing_rule is None)
    assert cp.version == 3


def test_playbooks_are_indexed_by_community() -> None:
    pbs = compiled()
    for _ in range(2):  # the second time from what the set keeps
        assert pbs.candidates(frozenset({"muslim"})) == ()
        assert [cp.playbook.id for cp in pbs.candidates(frozenset({"jewish"}))] == ["test-playbook"]


@pytest.mark.parametrize(("confirmation", "severity", "auto"), [
    (Confirmation(mode="required"), 4, False),
    (Confirmation(mode="required", auto_at_severity=4), 4, True),
    (Confirmation(mode="required", auto_at_severity=4), 3, False),
    (Confirmation(mode="auto"), 1, True),
])
def test_auto_confirmation(confirmation: Confirmation, severity: int, auto: bool) -> None:
    assert confirmation.auto_confirms(severity) is auto


def test_golden_cases_pass() -> None:
    from prevent.classification import Classifier
    from prevent.rules.playbooks.backtest import run_cases

    results = run_cases(REPO / "playbooks" / "tests", Classifier.from_dir(REPO / "playbooks"),
                        CompiledSet(load_directory(REPO / "playbooks")))
    assert len(results) >= 9
    assert [(r.name, r.problems) for r in results if not r.passed] == []


