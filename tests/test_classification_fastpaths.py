"""The classifier's shortcuts give what the longer ways gave: offsets and layout made in one
pass, and diaspora regions not searched where the map has none."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prevent.classification import Classifier
from prevent.classification.matcher import align, fold_layout, fold_map

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier.from_dir(PLAYBOOKS)


@given(st.text(alphabet=st.sampled_from("aßü ¼ﬁ\u064e\u0651م\u200cक\u093c\u05d9\u05b8 .,İ\ufb01\ufdf2")))
def test_fold_layout_is_fold_map_offsets_and_align(text: str) -> None:
    offsets, laid_out = fold_layout(text)
    assert offsets == fold_map(text)[1]
    assert laid_out == (text if offsets is None else align(text))


def test_no_region_is_looked_for_where_the_map_has_none(clf: Classifier) -> None:
    regions = clf._map.regions
    assert regions
    for region, names in regions:
        found = clf._map.regions_in((f"floods in {names[0]} today", ""), region.country)
        assert any(r.id == region.id for r, *_ in found)
        assert clf._map.regions_in((f"floods in {names[0]} today", ""), "ZZ") == []
