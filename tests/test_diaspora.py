"""The diaspora map (playbooks/diaspora.yaml): data officers keep, validated with file:line
errors, used for disasters abroad and for the majority faith of a region."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prevent.classification import Classifier, load_lexicon
from prevent.classification.diaspora import DIASPORA_FILE, load_diaspora_errors

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.from_dir(PLAYBOOKS)


def known() -> set[str]:
    return {c.id for c in load_lexicon(PLAYBOOKS).communities.communities}


def test_shipped_map_is_valid() -> None:
    data, errors = load_diaspora_errors(PLAYBOOKS / DIASPORA_FILE, known())
    assert errors == [] and data is not None and data.countries and data.regions


def test_a_disaster_in_a_country_only_the_map_links_reaches_its_communities(clf: Classifier) -> None:
    c = clf.classify("Hurricane Melissa devastates Jamaica, killing 19")
    assert c.incident_type == "natural_disaster" and c.severity >= 2
    assert {"black", "christian"} <= set(c.communities)


def test_a_region_adds_its_communities_to_a_disaster(clf: Classifier) -> None:
    c = clf.classify("Floods in Kerala kill 40", "Monsoon rains flooded districts across the state.",
                     country="IN")
    assert "muslim" in c.communities and any(e.rule == "region:IN-KL" for e in c.evidence)


def test_a_region_majority_faith_names_the_victims_of_an_attack_that_names_none(clf: Classifier) -> None:
    c = clf.classify("Gunmen kill over 100 in Yelwata, Benue", "Attackers stormed the farming community.")
    assert c.communities == ("christian",)
    assert any(e.rule == "region:NG-MIDDLE-BELT" for e in c.evidence)
    # Without the region's say-so, a village attack names no faith.
    assert clf.classify("Gunmen kill 12 villagers in Zamfara").communities == ()


@pytest.mark.parametrize("title", [
    "Militants open fire on tourists in Pahalgam, 26 killed",
    "पहलगाम में पर्यटकों पर आतंकी हमला, 26 की मौत",
    "ਪਹਿਲਗਾਮ ਦੀ ਬੈਸਰਨ ਵਾਦੀ 'ਚ ਸੈਲਾਨੀਆਂ 'ਤੇ ਅੱਤਵਾਦੀ ਹਮਲਾ, 26 ਦੀ ਮੌਤ",
])
def test_a_region_outsider_faith_names_tourists_singled_out_there(clf: Classifier, title: str) -> None:
    c = clf.classify(title)
    assert c.communities == ("hindu",) and c.severity >= 3
    rules = {e.rule for e in c.evidence}
    assert "outsider_faith:hindu" in rules and "region:IN-JK" in rules
    assert c.worship is False  # tourists are not a place of worship: no such playbook fires


@pytest.mark.parametrize("title", [
    "Gunmen kill five tourists at a Tunisian beach resort",  # no outsider_faith there
    "Tourists injured in bus accident near Gulmarg, 3 dead",  # no attack
    "Tourists flock to Gulmarg as the first snow arrives",
])
def test_tourists_elsewhere_or_unharmed_name_no_faith(clf: Classifier, title: str) -> None:
    assert "hindu" not in clf.classify(title).communities


def test_an_unknown_outsider_faith_is_a_file_line_error(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "version: 1\nregions:\n  - id: IN-X\n    country: IN\n"
                                 "    names: [Pahalgam]\n    outsider_faith: hindoo\n")
    assert any(":6:" in e and "unknown community 'hindoo'" in e for e in errors), errors


def errors_of(tmp_path: Path, text: str) -> list[str]:
    dest = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, dest, dirs_exist_ok=True)
    (dest / DIASPORA_FILE).write_text(text, encoding="utf-8")
    return load_diaspora_errors(dest / DIASPORA_FILE, known())[1]


def test_unknown_community_and_key_are_file_line_errors(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "version: 1\ncountries:\n  - country: JM\n    communities: [blak]\n")
    assert any(":4:" in e and "unknown community 'blak'" in e for e in errors), errors
    errors = errors_of(tmp_path, "version: 1\ncountries:\n  - country: JM\n    communities: [black]\n"
                                 "    colour: green\n")
    assert any(":5:" in e and "colour" in e for e in errors), errors
    errors = errors_of(tmp_path, "version: 1\nregions:\n  - id: NG-X\n    country: GH\n    names: [Accra]\n")
    assert any("starting GH-" in e for e in errors), errors


def test_a_bad_map_is_left_out_and_the_classifier_still_loads(tmp_path: Path) -> None:
    errors_of(tmp_path, "version: 1\ncountries: nonsense\n")
    clf = Classifier.from_dir(tmp_path / "playbooks")
    # communities.yaml's own links still hold; the map's do not.
    assert "muslim" in clf.classify("Earthquake kills 40 in Pakistan").communities
    assert "black" not in clf.classify("Hurricane devastates Jamaica, killing 19").communities


def test_cli_check_and_show(tmp_path: Path) -> None:
    from prevent.cli.main import app

    runner = CliRunner()
    ok = runner.invoke(app, ["diaspora", "check"])
    assert ok.exit_code == 0, ok.output
    dest = tmp_path / "bad.yaml"
    dest.write_text("version: 1\ncountries:\n  - country: JM\n    communities: [blak]\n", encoding="utf-8")
    bad = runner.invoke(app, ["diaspora", "check", str(dest)])
    assert bad.exit_code == 1 and f"{dest}:4:" in bad.output
    shown = runner.invoke(app, ["diaspora", "show", "JM"])
    assert shown.exit_code == 0 and "JM: black, christian" in shown.output
