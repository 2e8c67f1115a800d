"""Shipment numbers: the tenant's prefix and 5 to 8 digits, normalised, sorted, unique."""

from __future__ import annotations

import pytest

from classifier import find_refs


@pytest.mark.parametrize("written", ["SHP-104233", "SHP104233", "shp-104233", "SHP #104233", "SHP 104233",
                                     "SHP# 104233", "POD_SHP104233.pdf", "(SHP-104233)", "Shp:104233"])
def test_it_normalises_every_written_form(written: str) -> None:
    assert find_refs(f"see {written} today") == ["SHP-104233"]


def test_it_sorts_and_removes_duplicates() -> None:
    assert find_refs("SHP104301, SHP-104233 and shp-104233 again") == ["SHP-104233", "SHP-104301"]


@pytest.mark.parametrize("digits", ["10423", "1061877", "10048812"])
def test_it_accepts_five_to_eight_digits(digits: str) -> None:
    assert find_refs(f"SHP-{digits}") == [f"SHP-{digits}"]


@pytest.mark.parametrize("text", ["SHP-1042", "SHP-104233123", "PO 104233", "PRO 778812345", "BOL 7734120",
                                  "load 4471203", "WORKSHP-104233", "SHP-ABC123", "shipment 104233"])
def test_it_ignores_what_is_not_one_of_our_shipment_numbers(text: str) -> None:
    assert find_refs(text) == []


def test_it_builds_the_pattern_from_the_tenants_prefix() -> None:
    assert find_refs("HLF 204233 and SHP-104233", prefix="HLF") == ["HLF-204233"]
    assert find_refs("hlf-204233", prefix="hlf") == ["HLF-204233"]


def test_it_escapes_a_prefix_with_pattern_characters() -> None:
    assert find_refs("A.B-12345 AxB-12345", prefix="A.B") == ["A.B-12345"]


def test_it_refuses_an_empty_prefix() -> None:
    with pytest.raises(ValueError, match="prefix"):
        find_refs("SHP-104233", prefix=" ")
