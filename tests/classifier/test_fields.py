"""Weight, pieces, equipment, commodity and hazmat."""

from __future__ import annotations

import pytest

from classifier.fields import find_commodity, find_equipment, find_hazmat, find_pieces, find_weight


def weight(text: str, pieces: int | None = None) -> object:
    found = find_weight(text, pieces=pieces)
    return found.value if found else None


def value(found: object) -> object:
    return getattr(found, "value", None)


@pytest.mark.parametrize(("text", "expected"), [
    ("46,000 lbs", 46000), ("42k lbs avocados", 42000), ("20 pallets strawberries, 36k, 34F", 36000),
    ("38,000#", 38000), ("7,200 kg total", 15873), ("2,300 kg gross", 5071), ("22 tons", 44000),
    ("18 toneladas", 39683), ("Weight (lbs)\t22,000", 22000), ("WEIGHT\t32,400 LB", 32400), ("19.5k lbs", 19500),
    ("5 000 kg", 11023), ("approx 4,000 lbs", 4000),
])
def test_it_reads_weights_in_pounds(text: str, expected: int) -> None:
    assert weight(text) == expected


def test_it_multiplies_a_weight_per_crate_by_the_crates() -> None:
    assert weight("4 crates, 1,250 lbs each, 60x48x40") == 5000
    assert weight("1,250 lbs each", pieces=3) == 3750


@pytest.mark.parametrize("text", ["$2.31/mile", "42k miles a year", "Dock 4#", "class 85", "$1,188.00", "48x40x50"])
def test_it_does_not_take_other_numbers_for_weights(text: str) -> None:
    assert weight(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("22 pallets canned tomatoes", 22), ("12 plts, 14,200 lbs", 12), ("14 skids auto parts", 14),
    ("3 crates industrial pumps", 3), ("20 drums isopropyl alcohol", 20), ("4 steel coils, 44,000 lbs", 4),
    ("PIECES\t30 PLT", 30), ("Pallets\t16", 16), ("1 CNC machine (horizontal mill), 28,500 lbs", 1),
    ("12 bundles kiln dried lumber", 12), ("20 tarimas de refacciones", 20), ("12 palettes", 12),
])
def test_it_counts_handling_units(text: str, expected: int) -> None:
    assert value(find_pieces(text)) == expected


def test_it_counts_nothing_when_no_units_are_stated() -> None:
    assert find_pieces("Paper rolls, 43,000 lbs. Container: 1 x 40' HC") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("53' van", "dry_van"), ("Dry Van 53'", "dry_van"), ("53' DRY VAN", "dry_van"), ("rate on a van", "dry_van"),
    ("DV 53'", "dry_van"), ("temp controlled (15-25°C)", "reefer"), ("RFR", "reefer"), ("Please quote a flatbed", "flatbed"),
    ("FB quote", "flatbed"), ("step deck", "step_deck"), ("hotshot (40' gooseneck)", "hotshot"),
    ("26' box truck with liftgate", "box_truck"), ("drayage, 1 x 40' HC", "container"), ("power only", "power_only"),
    ("Please book an LTL pickup", "ltl"), ("LTL, 53' van", "dry_van"), ("caja seca de 53'", "dry_van"),
    ("remorque sèche", "dry_van"), ("Too tall for a flatbed. Need a step deck", "step_deck"),
])
def test_it_names_the_equipment(text: str, expected: str) -> None:
    assert value(find_equipment(text)) == expected


def test_it_names_no_equipment_for_a_truck_or_trailer_alone() -> None:
    assert find_equipment("Our 53' trailer #CSW-218 is preloaded; send a truck") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("22 pallets canned tomatoes, 40,000 lbs", "canned tomatoes"), ("22 pallets of furniture, approx 38,000 lbs",
                                                                    "furniture"),
    ("42k lbs avocados, 20 pallets", "avocados"), ("Commodity: paper products (cased copy paper), no hazmat",
                                                   "paper products"),
    ("COMMODITY\tHOUSEHOLD APPLIANCES", "household appliances"), ("4 steel coils, 44,000 lbs total", "steel coils"),
    ("Paper rolls, 43,000 lbs. Please dispatch", "paper rolls"), ("24 pallets / 38,000# / canned goods", "canned goods"),
    ("22 pallets, about 18,000 lbs, housewares (boxed kitchenware).", "housewares"),
    ("14 pallets, 16,800 lbs\nLithium-ion batteries, UN3480, Class 9", "lithium-ion batteries"),
    ("Potted trees (24 and 36 inch boxes), we load with a forklift.", "potted trees"),
])
def test_it_names_the_commodity_short_and_lower_case(text: str, expected: str) -> None:
    assert value(find_commodity(text)) == expected


def test_it_names_no_commodity_when_only_counts_weight_and_equipment_are_given() -> None:
    assert find_commodity("Need a quote 60607 to 30303. 12 plts, 14,200 lbs, dry van. Ready Friday.") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("Paint, UN1263, Class 3, PG III - hazmat", True), ("Lithium-ion batteries, UN3480, Class 9", True),
    ("hazmat endorsed driver + placards", True), ("2 pallets cleaning supplies (non-hazmat)", False),
    ("paper products, no hazmat", False), ("Non-hazardous.", False), ("HAZMAT\tN", False), ("Hazmat\tNo", False),
    ("RV parts, class 85", False), ("20 pallets of paper", False),
])
def test_it_sees_hazmat_only_where_it_is_stated(text: str, expected: bool) -> None:
    assert find_hazmat(text).value is expected
