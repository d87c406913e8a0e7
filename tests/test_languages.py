"""Detection in the languages of the local communities: golden cases per language, the
shared multilingual development set, bad input, and no network at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.offline import NETWORK_BLOCKED

from prevent.classification import Classifier, load_lexicon_errors
from prevent.classification.language import detect_language
from prevent.classification.lexicon import LEXICONS_DIR
from prevent.classification.scoring import score_alarms

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
GOLDEN = ROOT / "tests" / "golden"
SHARED = ROOT.parent / "shared" / "data"
# The languages the unit's communities read and report in (issue: at least these).
REQUIRED = ("fr", "es", "pt", "it", "de", "ar", "ur", "fa", "hi", "pa", "bn", "ta", "he", "tr")
ONE_TYPE = {"hate_crime": "armed_attack"}  # the scorer counts these two as one


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.from_dir(PLAYBOOKS)


def test_every_required_language_has_a_valid_lexicon(clf: Classifier) -> None:
    assert load_lexicon_errors(PLAYBOOKS) == []
    missing = [code for code in REQUIRED if code not in clf.languages]
    assert not missing, f"no lexicon for {missing}"
    for code in REQUIRED:
        assert (PLAYBOOKS / LEXICONS_DIR / f"{code}.yaml").is_file()


def _golden() -> list[tuple[str, dict]]:
    cases = []
    for path in sorted(GOLDEN.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                cases.append((f"{path.name}:{n}", json.loads(line)))
    return cases


@pytest.mark.parametrize(("where", "case"), _golden(), ids=[w for w, _ in _golden()])
def test_golden_case(clf: Classifier, where: str, case: dict) -> None:
    c = clf.classify(case["title"], case.get("summary", ""))
    assert c.lang == case["lang"], f"{where}: language {c.lang}"
    want = set(case.get("communities") or ())
    assert want <= set(c.communities), f"{where}: {c.communities} lacks {want - set(c.communities)}"
    if want or case.get("min_severity", 0) >= 2:
        got_type = ONE_TYPE.get(c.incident_type, c.incident_type)
        assert got_type == ONE_TYPE.get(case["incident_type"], case["incident_type"]), where
    assert case.get("min_severity", 0) <= c.severity <= case.get("max_severity", 4), \
        f"{where}: severity {c.severity}, evidence {c.to_json()['evidence']}"


def test_golden_cases_cover_every_required_language() -> None:
    langs = {case["lang"] for _, case in _golden()}
    assert set(REQUIRED) <= langs, f"no golden cases for {sorted(set(REQUIRED) - langs)}"


@pytest.mark.parametrize(("text", "lang"), [
    ("Une synagogue visée par des cocktails Molotov à Montréal", "fr"),
    ("Un hombre mata a machetazos al sacristán de una iglesia", "es"),
    ("Anschlag auf Synagoge in Halle: zwei Tote", "de"),
    ("مقتل سبعة أشخاص في إطلاق نار قرب كنيس", "ar"),
    ("پشاور میں سکھ تاجر فائرنگ سے جاں بحق", "ur"),
    ("ਗੁਰਦੁਆਰੇ ਵਿੱਚ ਬੇਅਦਬੀ", "pa"),
    ("מחבל פתח באש ליד בית כנסת בירושלים", "he"),
    # scripts no lexicon reads still get their language (the semantic layer reads those items)
    ("Теракт в синагоге в Дербенте: погибли семь человек", "ru"),
    ("巴基斯坦清真寺爆炸 至少50人死亡", "zh"),
    ("Ελλάδα: σεισμός 6 Ρίχτερ στην Κρήτη", "el"),
])
def test_language_of_an_item(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_declared_language_decides_only_when_the_text_cannot(clf: Classifier) -> None:
    assert detect_language("Explosion", declared="fr") == "fr"  # too short to tell
    assert detect_language("Gunmen storm a church during Sunday mass, killing five", declared="fr") == "en"


@pytest.mark.parametrize("title", [
    "", " ", "☃☃☃ ∑∑∑", "ᚠᚢᚦᚨᚱᚲ ᚷᚹ", "Mosquée مسجد מסגד मस्जिद attack हमला", "\u200d\u200c\u0640",
    "x" * 100_000, "attentat " * 12_000,
])
def test_bad_input_never_stops_the_stage(clf: Classifier, title: str) -> None:
    c = clf.classify(title, title[:10_000])
    assert 0 <= c.severity <= 4
    for ev in c.evidence:  # offsets always point into the original text
        text = title if ev.field == "title" else title[:10_000]
        assert text[ev.start:ev.end] == ev.term or ev.rule.startswith("source:")


def test_evidence_offsets_in_scripts_with_dropped_marks(clf: Classifier) -> None:
    title = "مَقْتَلُ ثلاثة مصلين في هجوم على مسجدٍ"
    c = clf.classify(title)
    assert c.evidence
    for ev in c.evidence:
        assert title[ev.start:ev.end] == ev.term


def test_a_bad_language_file_is_a_file_line_error_and_the_others_stay(tmp_path: Path) -> None:
    import shutil

    dest = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, dest)
    bad = dest / LEXICONS_DIR / "fr.yaml"
    bad.write_text(bad.read_text(encoding="utf-8") + "\ncolour: blue\n", encoding="utf-8")
    errors = load_lexicon_errors(dest)
    assert any(e.startswith(f"{bad}:") and "colour" in e for e in errors), errors
    clf = Classifier.from_dir(dest)  # French is left out; every other language still loads
    assert "fr" not in clf.languages and "es" in clf.languages
    assert clf.classify("Tiroteo en una iglesia: tres fieles muertos").communities


def test_classification_needs_no_network(tmp_path: Path) -> None:
    """Models and data come from installed packages only: classify in a process whose
    sockets all fail."""
    script = tmp_path / "offline.py"
    script.write_text(
        NETWORK_BLOCKED +
        "from pathlib import Path\n"
        "from prevent.classification import Classifier\n"
        f"clf = Classifier.from_dir(Path({str(PLAYBOOKS)!r}))\n"
        "for t in ['Bomb attack on church kills 12 worshippers', 'Attentat contre une mosquée : 3 morts',"
        " 'हमले में 5 लोगों की मौत', 'מחבל פתח באש ליד בית כנסת']:\n"
        "    print(clf.classify(t).lang)\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["en", "fr", "hi", "he"]


def _score(labels: Path, clf: Classifier) -> tuple[dict[str, list[int]], int, int]:
    items = [json.loads(line) for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = score_alarms(clf, items)
    print(result.summary())
    return result.per_language, result.negatives, result.negatives_alarmed


@pytest.mark.skipif(not (SHARED / "incidents-multilingual-dev.jsonl").is_file(),
                    reason="../shared/data/incidents-multilingual-dev.jsonl not present")
def test_shared_multilingual_set(clf: Classifier) -> None:
    per, negatives, alarmed = _score(SHARED / "incidents-multilingual-dev.jsonl", clf)
    total = sum(v[0] for v in per.values()) / sum(v[1] for v in per.values())
    print({k: f"{a}/{n}" for k, (a, n) in sorted(per.items())}, f"overall {total:.2f}",
          f"negatives alarmed {alarmed}/{negatives}")
    assert total >= 0.90
    for lang, (a, n) in per.items():
        if n >= 3:
            assert a / n >= 0.80, f"{lang}: {a}/{n}"
    assert alarmed <= 0.05 * negatives


@pytest.mark.skipif(not (SHARED / "incidents-dev.jsonl").is_file(),
                    reason="../shared/data/incidents-dev.jsonl not present")
def test_shared_english_set_does_not_regress(clf: Classifier) -> None:
    per, _negatives, alarmed = _score(SHARED / "incidents-dev.jsonl", clf)
    a, n = per["en"]
    assert a == n, f"English alarms {a}/{n}"  # 34/34 before the multilingual redesign
    assert alarmed == 0


def _grouped(lines: list[dict]) -> list[dict]:
    from prevent.cli.classify_commands import classify_lines
    from prevent.platform.config import Settings

    settings = Settings(playbooks_dir=PLAYBOOKS)
    return [json.loads(out) for out in classify_lines([json.dumps(x) for x in lines], settings, group=True)]


def test_one_event_in_three_languages_is_one_cluster_and_another_event_is_not() -> None:
    same = [
        {"id": "fr", "published": "2025-03-02T08:00:00Z",
         "title": "Nigeria : des hommes armés tuent 12 fidèles dans une église de l'État de Kaduna",
         "summary": "L'attaque a eu lieu pendant la messe du dimanche, selon la police."},
        {"id": "ar", "published": "2025-03-02T11:00:00Z",
         "title": "مقتل 12 مصليا في هجوم مسلح على كنيسة في ولاية كادونا بنيجيريا",
         "summary": "هاجم مسلحون الكنيسة خلال قداس الأحد."},
        {"id": "es", "published": "2025-03-02T14:00:00Z",
         "title": "Hombres armados asesinan a 12 fieles en una iglesia de Nigeria",
         "summary": "El ataque ocurrió durante la misa dominical en el estado de Kaduna."},
        {"id": "other", "published": "2025-03-02T15:00:00Z",
         "title": "Incendie criminel dans une mosquée de Lyon : la façade endommagée",
         "summary": "Aucun blessé n'est à déplorer, selon la préfecture."},
    ]
    out = {o["id"]: o for o in _grouped(same)}
    assert out["fr"]["cluster"] == out["ar"]["cluster"] == out["es"]["cluster"]
    assert out["other"]["cluster"] != out["fr"]["cluster"]


@pytest.mark.skipif(not (SHARED / "incidents-multilingual-dev.jsonl").is_file(),
                    reason="../shared/data/incidents-multilingual-dev.jsonl not present")
def test_shared_events_reported_in_several_languages_group_together() -> None:
    items = [json.loads(line) for line in (SHARED / "incidents-multilingual-dev.jsonl").read_text(
        encoding="utf-8").splitlines()]
    by_id = {i["id"]: i for i in items}
    events: dict[str, set[str]] = {}
    clusters: dict[str, set[str]] = {}
    for out in _grouped(items):
        event = by_id[out["id"]].get("event")
        if event:
            events.setdefault(event, set()).add(out["cluster"])
        clusters.setdefault(out["cluster"], set()).add(event or out["id"])
    together = sum(len(c) == 1 for c in events.values())
    print(f"{together} of {len(events)} events in one cluster")
    assert together >= 0.9 * len(events)
    assert not [c for c, evs in clusters.items() if len(evs) > 1], "a cluster mixes two events"


@pytest.mark.parametrize(("name", "first_run", "bar"), [
    # 113 items in 14 languages from real events not in the shared set (78 with the outlets'
    # own headlines); first run: alarm recall 0.79, 2 of 42 negatives alarmed; 0.96 after the
    # general fixes of the second session (docs/CLASSIFICATION.md, Evaluation).
    ("incidents-multilingual-holdout.jsonl", 0.79, 0.92),
    # 99 items, nearly all with the outlets' own headline and lede; first run: 0.68, 1 of 29;
    # 0.96 after the second session's fixes.
    ("incidents-multilingual-holdout2.jsonl", 0.68, 0.92),
])
def test_multilingual_holdout_sets(clf: Classifier, name: str, first_run: float, bar: float) -> None:
    """Written by someone who had not seen the lexicons. The bars guard what general fixes
    reached since the first run (docs/CLASSIFICATION.md, Evaluation); never tune a lexicon
    to one of their items."""
    per, negatives, alarmed = _score(ROOT / "tests" / "data" / name, clf)
    total = sum(v[0] for v in per.values()) / sum(v[1] for v in per.values())
    print(f"first run {first_run:.2f}, now {total:.2f}")
    assert total >= bar
    assert alarmed <= 0.05 * negatives


def test_holdout_sets_without_the_feed_country(clf: Classifier) -> None:
    """Real feeds seldom carry a country: the held-out sets alarm as well when the text alone
    says where (Bengali and Tamil case endings on place names, regions of the diaspora map)."""
    for name in ("incidents-multilingual-holdout.jsonl", "incidents-multilingual-holdout2.jsonl"):
        path = ROOT / "tests" / "data" / name
        if not path.is_file():
            continue
        hit = total = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            if (item.get("severity") or 0) < 2 or not item.get("communities") or \
                    item.get("incident_type") == "natural_disaster":
                continue
            c = clf.classify(item["title"], item.get("summary", ""))
            total += 1
            hit += c.severity >= 2 and bool(set(c.communities) & set(item["communities"]))
        assert hit >= 0.88 * total, f"{name}: {hit}/{total}"


@pytest.mark.parametrize(("title", "summary", "lang", "country"), [
    ("বাংলাদেশের উপকূলে ঘূর্ণিঝড়ে ১০ জনের মৃত্যু", "", "bn", "BD"),
    ("ভারতে বন্যায় ২০ জনের মৃত্যু", "", "bn", "IN"),
    ("ঢাকায় ভূমিকম্প, আহত ১২", "", "bn", "BD"),
    ("இலங்கையில் வெள்ளம்: 20 பேர் உயிரிழப்பு", "", "ta", "LK"),
    ("பாகிஸ்தானில் நிலநடுக்கம்: 30 பேர் பலி", "", "ta", "PK"),
    ("கேரளத்தில் நிலச்சரிவு: 50 பேர் பலி", "", "ta", "IN"),
])
def test_place_names_with_case_endings(clf: Classifier, title: str, summary: str, lang: str,
                                       country: str) -> None:
    c = clf.classify(title, summary)
    assert (c.lang, c.country) == (lang, country), c.to_json()


@pytest.mark.parametrize(("title", "lang"), [
    ("সড়ক দুর্ঘটনায় ৫ হিন্দু তীর্থযাত্রী নিহত", "bn"),
    ("कराची में सड़क हादसे में 5 सिख श्रद्धालु मारे गए", "hi"),
    ("کراچی میں ٹریفک حادثے میں 4 مسیحی ہلاک", "ur"),
    ("Deux musulmans tués dans un accident de la route", "fr"),
    ("Drei Muslime bei Unfall getötet", "de"),
    ("שלושה ערבים נהרגו בתאונת דרכים", "he"),
])
def test_killed_in_an_accident_is_no_incident(clf: Classifier, title: str, lang: str) -> None:
    """A killing word with no attack word makes an incident ("400 Rohingya killed"); an
    accident word (the language's ``none`` type) outvotes it."""
    c = clf.classify(title)
    assert (c.lang, c.incident_type, c.severity, c.communities) == (lang, "none", 0, ()), c.to_json()


@pytest.mark.parametrize(("title", "lang", "community"), [
    ("রাখাইনে সেনা অভিযানে ২০০ রোহিঙ্গা নিহত", "bn", "muslim"),
    ("पाकिस्तान में 3 सिख मारे गए", "hi", "sikh"),
    ("Trois juifs tués à Djerba", "fr", "jewish"),
    ("İki Müslüman öldürüldü", "tr", "muslim"),
])
def test_killed_with_no_attack_word_is_an_incident(clf: Classifier, title: str, lang: str,
                                                   community: str) -> None:
    c = clf.classify(title)
    assert c.lang == lang and community in c.communities and c.severity >= 3, c.to_json()


def test_region_rules_of_the_diaspora_map(clf: Classifier) -> None:
    """Communities implied by a place: a missile strike on an Arab town of Israel, a bombing in
    Kabul's Hazara west, pilgrims attacked in Jammu, a riot in a communal flashpoint."""
    c = clf.classify("טיל פגע בבית בסח'נין: שתי נשים נהרגו")
    assert "muslim" in c.communities and c.severity >= 3, c.to_json()
    c = clf.classify("ירי בסח'נין: צעיר נהרג")  # a shooting there: too often crime to count
    assert "muslim" not in c.communities, c.to_json()
    c = clf.classify("انفجار در دشت برچی کابل؛ ۲۰ نفر کشته شدند")
    assert {"muslim", "shia"} <= set(c.communities) and not c.worship, c.to_json()
    c = clf.classify("जम्मू में श्रद्धालुओं की बस पर आतंकी हमला, 9 की मौत")
    assert "hindu" in c.communities and c.worship, c.to_json()
    c = clf.classify("नूंह में हिंसा, पथराव और आगजनी में दो की मौत")
    assert {"hindu", "muslim"} <= set(c.communities), c.to_json()
