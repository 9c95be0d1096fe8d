"""cbmir.core.dicom_tags: the one parser of tag spellings (CBMIR.LabelTag, cbmir import --label-tag)."""
from __future__ import annotations

import pytest

from cbmir.core.dicom_tags import parse_tag


@pytest.mark.parametrize("spec", ["ImageComments", " ImageComments ", "0020,4000", "(0020,4000)",
                                  "00204000", "0020, 4000", "( 0020 , 4000 )", "0020,4000\n"])
def test_every_usual_spelling_gives_the_tag(spec):
    tag = parse_tag(spec)
    assert tag == 0x00204000 and (tag.group, tag.element) == (0x0020, 0x4000)


def test_hex_digits_in_either_case():
    assert parse_tag("7fe0,0010") == parse_tag("7FE0,0010") == parse_tag("PixelData")


@pytest.mark.parametrize("spec", ["NoSuchKeyword", "zzzz,1234", "0020,40000", "020,4000", "",
                                  "0020;4000", 0x00204000, None])
def test_anything_else_is_a_value_error_naming_both_spellings(spec):
    with pytest.raises(ValueError, match="keyword such as ImageComments.*0020,4000"):
        parse_tag(spec)
