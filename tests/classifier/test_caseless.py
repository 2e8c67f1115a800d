"""Case-insensitive scans on lower-cased ASCII text: the same matches as re.IGNORECASE."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.caseless import _FOLDS_TO_ASCII, Caseless

PATTERNS = [r"quot|rate|run\b(?<!\wrun)|do\s+(?:it|this)\s+for", r"^[ \t]*(?:yes|ok)?[ ,]*approved\b",
            r"\b(?:un|na)\s?\d{4}|\bt?dg\b", r"(?P<n>\d)\s?(?P=n)\s*(?:units|qty)"]
ASCII_WORDS = st.text(alphabet=st.sampled_from(list("aAdDgGiInNoOqQrRsStTuUkK0123 \t\n,.-/")), max_size=300)


@settings(max_examples=300, deadline=None)
@given(ASCII_WORDS, st.sampled_from(PATTERNS))
def test_it_finds_what_ignorecase_finds_in_ascii_text(text: str, pattern: str) -> None:
    caseless = Caseless(pattern, re.MULTILINE)
    expected = [m.span() for m in re.finditer(pattern, text, re.IGNORECASE | re.MULTILINE)]
    assert [m.span() for m in caseless.finditer(text)] == expected
    assert [m.span() for m in caseless.finditer(text, text.lower())] == expected
    for start in range(0, len(text), 7):
        found = re.compile(pattern, re.IGNORECASE | re.MULTILINE).search(text, start, start + 20)
        mine = caseless.search(text, start, start + 20)
        assert (mine.span() if mine else None) == (found.span() if found else None)


def test_it_scans_other_text_case_insensitively() -> None:
    caseless = Caseless(r"rate\b")
    text = "RATE for the Café run, RATE"
    assert [m.group() for m in caseless.finditer(text)] == ["RATE", "RATE"]
    found = caseless.search("Übergröße: RATE please")
    assert found is not None and found.group() == "RATE"


@pytest.mark.parametrize("pattern", [r"[A-Z]{2}", r"Rate", r"(?-i:DG)", "\u017fhip", "\u212ag"])
def test_it_refuses_a_pattern_that_needs_ignorecase_on_lowered_text(pattern: str) -> None:
    with pytest.raises(ValueError):
        Caseless(pattern)


def test_it_knows_every_character_ignorecase_equates_with_an_ascii_letter() -> None:
    letter = re.compile("[a-z]", re.IGNORECASE)
    assert {chr(c) for c in range(128, 0x110000) if letter.fullmatch(chr(c))} == _FOLDS_TO_ASCII
