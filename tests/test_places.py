"""The gazetteer: countries, regions and cities in every script of the project's languages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prevent.classification.matcher import fold
from prevent.classification.places import Gazetteer, Place, gazetteer, load_places_file
from prevent.platform.yamlsource import SourceError

_BUILD: dict[str, float] = {}


@pytest.fixture(scope="module")
def gaz() -> Gazetteer:
    start = time.perf_counter()
    g = gazetteer()
    _BUILD["seconds"] = time.perf_counter() - start
    return g


def country(gaz: Gazetteer, text: str) -> str | None:
    found = gaz.country_of(fold(text), text)
    return found[0] if found else None


def places(gaz: Gazetteer, text: str) -> list[Place]:
    return gaz.find(fold(text), text)


@pytest.mark.parametrize(("text", "expected"), [
    ("Severe Thunderstorm Warning issued for Eddy County, New Mexico", "US"),
    ("Séisme en Turquie", "TR"),
    ("زلزال يضرب تركيا", "TR"),
    ("भूकंप नेपाल में", "NP"),
    ("Gaza", "PS"),
    ("Dublin riot", "IE"),
    ("Jordan Henderson scores", None),
    ("Church Street attack in Toronto", "CA"),
    ("Black Sea storm", None),
    ("ירושלים", "IL"),
    ("இலங்கை", "LK"),
    ("বাংলাদেশ", "BD"),
    ("ਪਾਕਿਸਤਾਨ", "PK"),
    ("پشاور", "PK"),
    ("Messerangriff in Solingen", "DE"),
])
def test_country_of_headlines(gaz: Gazetteer, text: str, expected: str | None) -> None:
    assert country(gaz, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Bushfires spread across New South Wales", "AU"),
    ("Flash floods in Rio Grande do Sul", "BR"),
    ("Gunmen kill 20 in Benue", "NG"),
    ("Attacks on villages in Plateau State", "NG"),
    ("Curfew in Manipur after clashes", "IN"),
    ("Blast in Khyber Pakhtunkhwa", "PK"),
    ("Settler attack in the West Bank", "PS"),
    ("Explosion à Beyrouth", "LB"),
    ("Terremoto en México", "MX"),
    ("Ataque em Moçambique", "MZ"),
    ("Anschlag auf Synagoge in Halle", "DE"),
    ("İstanbul'da patlama", "TR"),
    ("انفجار في بغداد", "IQ"),
    ("پشاور میں دھماکہ", "PK"),
    ("ढाका में हमला", "BD"),
    ("চট্টগ্রাম", "BD"),
    ("சென்னை", "IN"),
    ("ਅੰਮ੍ਰਿਤਸਰ", "IN"),
    ("פיגוע בירושלים", "IL"),
    ("Tehran protests", "IR"),
    ("Muslim activists raise funds for cemetery in St. Louis", "US"),
    ("Gunmen target kosher market in Jersey City", "US"),
])
def test_regions_cities_and_scripts(gaz: Gazetteer, text: str, expected: str) -> None:
    assert country(gaz, text) == expected


def test_longest_name_wins(gaz: Gazetteer) -> None:
    found = places(gaz, "Warning for Eddy County, New Mexico")
    assert [(p.name, p.country, p.kind) for p in found] == [("New Mexico", "US", "region")]
    assert [p.country for p in places(gaz, "Rain in New South Wales")] == ["AU"]
    assert places(gaz, "Black Sea storm") == []  # not Black, not a sea of any country
    assert places(gaz, "Gulf of Mexico hurricane") == []
    assert places(gaz, "Church Street attack") == []


def test_offsets_point_into_folded_text(gaz: Gazetteer) -> None:
    text = "Séisme près de Marrakech, au Maroc"
    folded = fold(text)
    found = places(gaz, text)
    assert [folded[p.start:p.end] for p in found] == ["marrakech", "maroc"]
    text = "Riot in St. Louis, Missouri"  # punctuation folds to runs of spaces
    folded = fold(text)
    assert [folded[p.start:p.end] for p in places(gaz, text)] == ["st  louis", "missouri"]


def test_demonyms_and_words_are_not_places(gaz: Gazetteer) -> None:
    for text in ("Indian engineer killed", "Pakistani students protest", "Israeli tourists",
                 "Nice weather today", "Reading the riot act", "Police arrest man",
                 "Batman returns", "Victoria wins", "Hamas attack", "Durga Puja",
                 "الشرطة في المدينة", "पुलिस ने मस्जिद", "Turkish coffee"):
        assert places(gaz, text) == [], text


def test_latin_city_needs_a_capital_letter(gaz: Gazetteer) -> None:
    assert country(gaz, "Three killed in knife attack at Nice basilica") == "FR"
    assert country(gaz, "a nice day in the park") is None
    assert country(gaz, "Man stabbed in Reading") == "GB"
    assert country(gaz, "DUBLIN RIOT") == "IE"


def test_acronyms_need_capitals(gaz: Gazetteer) -> None:
    assert country(gaz, "US strikes in Yemen") == "YE"
    assert country(gaz, "US sanctions") == "US"
    assert country(gaz, "tell us more") is None


def test_small_towns_need_a_place_preposition(gaz: Gazetteer) -> None:
    assert country(gaz, "Gunman kills three in Chapel Hill") == "US"
    assert country(gaz, "Chapel Hill, North Carolina shooting") == "US"
    assert country(gaz, "Golden Temple lit up for Guru Nanak's birthday") is None


def test_jordan_needs_a_preposition(gaz: Gazetteer) -> None:
    assert country(gaz, "Jordan Henderson scores") is None
    assert country(gaz, "Refugee camp in Jordan floods") == "JO"
    assert country(gaz, "Séisme en Jordanie") == "JO"
    assert country(gaz, "زلزال في الأردن") == "JO"


def test_ambiguous_names(gaz: Gazetteer) -> None:
    georgia = places(gaz, "Georgia protest")
    assert [(p.country, set(p.alternatives)) for p in georgia] == [(None, {"GE", "US"})]
    assert country(gaz, "Georgia protest") is None
    assert country(gaz, "Atlanta, Georgia shooting") == "US"
    assert country(gaz, "Tbilisi, Georgia protest") == "GE"
    assert country(gaz, "Temple attacked in Punjab") is None
    assert country(gaz, "Temple attacked in Pakistan's Punjab") == "PK"
    assert country(gaz, "Blast in Hyderabad, Pakistan") == "PK"
    assert country(gaz, "Birmingham mosque attack") == "GB"  # 1.2 million against 200,000
    assert country(gaz, "Birmingham, Alabama church bombing") == "US"
    assert country(gaz, "Shooting in London, Ontario") == "CA"
    assert country(gaz, "Paris, Texas tornado") == "US"
    assert country(gaz, "Floods in Congo") is None


def test_country_of_prefers_the_scene(gaz: Gazetteer) -> None:
    assert country(gaz, "Israel strikes Gaza") == "PS"  # a city or region beats the actor
    assert country(gaz, "Russia attacks Kyiv") == "UA"
    assert country(gaz, "UK aid worker killed in Nigeria") == "NG"  # a place preposition wins
    assert country(gaz, "Nigeria: gunmen attack church, UK condemns") == "NG"  # dateline
    found = gaz.country_of(fold("Suicide bomber kills 22 at Manchester Arena"),
                           "Suicide bomber kills 22 at Manchester Arena")
    assert found is not None and found[0] == "GB" and found[1].cued and found[1].kind == "city"


def test_hebrew_and_arabic_prefixes(gaz: Gazetteer) -> None:
    text = "פיגוע בירושלים"
    (place,) = places(gaz, text)
    assert place.country == "IL" and place.cued
    assert fold(text)[place.start:place.end] == "ירושלים"
    assert country(gaz, "قصف وبغداد") == "IQ"
    assert country(gaz, "مساعدات للعراق") == "IQ"
    assert country(gaz, "لبنان") == "LB"  # not ل + a place "بنان"


def test_places_file_is_valid() -> None:
    data = load_places_file()
    assert data.regions["PS"] and "Georgia" in data.ambiguous


def test_places_file_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "places.yaml"
    bad.write_text("countries:\n  XX: [Foo]\nregions:\n  IN: [Kerala]\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(SourceError) as err:
        load_places_file(bad)
    assert f"{bad}:2: countries.XX" in str(err.value)
    assert f"{bad}:5: bogus" in str(err.value)


def test_custom_places_file(tmp_path: Path) -> None:
    """A Gazetteer takes its curated data from the file it is given."""
    path = tmp_path / "places.yaml"
    path.write_text("regions:\n  PK: [Tirah Valley]\nnot_cities: [dublin]\n", encoding="utf-8")
    g = Gazetteer(load_places_file(path))
    assert country(g, "Operation in Tirah Valley") == "PK"
    assert country(g, "Dublin riot") is None


def test_timing_sanity(gaz: Gazetteer) -> None:
    """Printed, not asserted: build time and the cost of one headline."""
    text = "Gunmen and suicide bombers kill 130 in coordinated attacks across Paris, France"
    folded = fold(text)
    runs = 2000
    start = time.perf_counter()
    for _ in range(runs):
        gaz.country_of(folded, text)
    per = (time.perf_counter() - start) / runs
    print(f"\ngazetteer: {gaz.size} names, built in {_BUILD.get('seconds', 0.0):.2f}s "
          f"(0 if already cached); country_of {per * 1e6:.1f} µs per headline")


@pytest.mark.parametrize(("lat", "lon", "country"), [
    (34.36, 62.20, "AF"),     # Herat
    (32.42, -104.23, "US"),   # Carlsbad, Eddy County, New Mexico: not Mexico
    (-19.84, 34.84, "MZ"),    # Beira
    (31.52, 74.36, "PK"),     # Lahore, near the Indian border
    (0.0, -140.0, None),      # the open Pacific
])
def test_a_feeds_own_coordinates_give_the_country(lat: float, lon: float, country: str | None) -> None:
    from prevent.classification.places import country_at

    assert country_at(lat, lon) == country


def test_no_look_back_stem_starts_a_place_name() -> None:
    """An aftermath stem of a language lexicon (a look-back word such as Tamil "விருது*",
    award) must not be the start of a place name in the gazetteer: it would match the place
    and cap every report from there at severity 1 (Virudhunagar, Bodh Gaya as புத்தகயா)."""
    from prevent.classification.lexicon import load_lexicon
    from prevent.platform.config import REPO_ROOT

    names = {key.strip() for key in gazetteer()._automaton}  # the built index of every name
    assert len(names) > 10_000  # the index was read
    lexicon = load_lexicon(REPO_ROOT / "playbooks")
    clashes = []
    for code, lang in lexicon.languages.items():
        stems = {fold(term[:-1]).strip() for term in lang.aftermath if term.endswith("*")}
        clashes += [(code, stem, name) for stem in stems if len(stem) >= 3 and " " not in stem
                    for name in names if name != stem and name.startswith(stem)]
    assert not clashes, clashes[:10]
