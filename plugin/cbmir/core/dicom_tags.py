"""DICOM tags written by people: "0020,4000", "(0020,4000)", "00204000" or a keyword.

Why one module: the plugin's `CBMIR.LabelTag` and `cbmir import --label-tag` name
the same tag and must accept the same spellings (they had two regexes).
"""
from __future__ import annotations

import re

from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag, Tag

_NUMBER = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")


def parse_tag(spec) -> BaseTag:
    """A tag (an int, `tag.group`/`tag.element`) from a number or a dictionary keyword;
    ValueError naming both spellings otherwise."""
    if isinstance(spec, str):
        text = spec.strip()
        match = _NUMBER.match(text)
        if match:
            return Tag(int(match.group(1), 16), int(match.group(2), 16))
        number = tag_for_keyword(text) if text else None  # pydicom maps "" to a tag
        if number is not None:
            return Tag(number)
    raise ValueError(f"unknown DICOM tag {spec!r}: use a keyword such as ImageComments "
                     "or a number such as 0020,4000")
