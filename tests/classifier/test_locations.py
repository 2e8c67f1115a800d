"""Places, and which one is the origin and which the destination."""

from __future__ import annotations

import pytest

from classifier.locations import Location, find_lane, find_mentions, precise


def lane(text: str) -> tuple[Location | None, Location | None]:
    found = find_lane(text)
    return found.origin, found.destination


def us(city: str, state: str, postal: str | None = None) -> Location:
    return Location(city, state, postal, "US")


def test_it_reads_city_state_and_zip_joined_by_to() -> None:
    assert lane("Spokane, WA 99202 to Boise, ID 83705") == (us("Spokane", "WA", "99202"), us("Boise", "ID", "83705"))


def test_it_reads_labelled_ends_on_their_own_lines() -> None:
    assert lane("PU: Dallas, TX 75207 - tomorrow\nDEL: Atlanta, GA 30336 - Thursday") == (
        us("Dallas", "TX", "75207"), us("Atlanta", "GA", "30336"))


def test_it_reads_a_lane_without_commas_when_the_place_data_knows_the_city() -> None:
    assert lane("Rate request - Dallas TX to Atlanta GA") == (us("Dallas", "TX"), us("Atlanta", "GA"))
    assert lane("Des Moines IA -> Sioux Falls SD") == (us("Des Moines", "IA"), us("Sioux Falls", "SD"))


def test_it_does_not_read_capitalised_words_before_a_code_as_a_city_it_does_not_know() -> None:
    assert find_mentions("PLEASE PICK UP IN DALLAS") == []
    assert find_mentions("Driver Status IN transit") == []


def test_it_resolves_a_zip_only_lane_from_usps_data() -> None:
    assert lane("Need a quote 60607 to 30303.") == (us("Chicago", "IL", "60607"), us("Atlanta", "GA", "30303"))
    assert lane("93030 -> 98108") == (us("Oxnard", "CA", "93030"), us("Seattle", "WA", "98108"))


def test_it_reads_zips_named_by_a_label() -> None:
    assert lane("Origin ZIP\t38118\nDestination ZIP\t43217") == (us("Memphis", "TN", "38118"),
                                                                 us("Columbus", "OH", "43217"))


def test_it_does_not_take_po_or_invoice_numbers_for_zips() -> None:
    assert find_mentions("PO 77102, invoice 20931, BOL 7734120") == []


def test_it_keeps_the_five_digit_zip_of_a_zip_plus_four() -> None:
    assert lane("Origin: Toledo, OH 43607\nDestination: Grand Rapids, MI 49512-5319")[1] == us(
        "Grand Rapids", "MI", "49512")


def test_it_reads_canadian_provinces_by_code_and_by_name_and_postal_codes() -> None:
    origin, destination = lane("From: Mississauga, ON L4T 3A7\nTo: Detroit, MI 48209")
    assert origin == Location("Mississauga", "ON", "L4T 3A7", "CA")
    assert destination == us("Detroit", "MI", "48209")
    assert lane("Calgary, Alberta -> Williston, ND 58801")[0] == Location("Calgary", "AB", None, "CA")
    assert find_mentions("Laval (Québec) H7A 1B4")[0].location == Location("Laval", "QC", "H7A 1B4", "CA")


def test_it_gives_a_lone_canadian_postal_code_its_province() -> None:
    assert find_mentions("deliver to L4K 2B6")[0].location == Location(None, "ON", "L4K 2B6", "CA")


def test_it_reads_mexican_places_and_tells_them_from_canadian_ones() -> None:
    assert find_mentions("Monterrey, NL 64000")[0].location == Location("Monterrey", "NL", "64000", "MX")
    assert find_mentions("Tijuana, BC")[0].location.country == "MX"
    assert find_mentions("Vancouver, BC")[0].location.country == "CA"
    assert find_mentions("Guadalajara, Jal.")[0].location == Location("Guadalajara", "JAL", None, "MX")


def test_it_cuts_the_city_off_the_words_before_it() -> None:
    assert lane("Picking up at our Greenville, SC 29607 plant next Tuesday, going to Houston, TX 77032.") == (
        us("Greenville", "SC", "29607"), us("Houston", "TX", "77032"))
    assert lane("Pick up: Pier T, Long Beach, CA 90802\nDeliver: our DC, Ontario, CA 91761") == (
        us("Long Beach", "CA", "90802"), us("Ontario", "CA", "91761"))


def test_it_writes_an_upper_case_city_properly_capitalised() -> None:
    assert find_mentions("CONSIGNEE\tSOUTHEAST HOME CENTER, ATLANTA, GA 30336")[0].location.city == "Atlanta"


def test_it_knows_abbreviated_saints_and_forts() -> None:
    assert find_mentions("St. Louis, MO 63101")[0].location.city == "St. Louis"
    assert find_mentions("Ft. Worth, TX")[0].location.city == "Ft. Worth"


def test_it_gives_an_address_block_the_role_of_its_label() -> None:
    text = "SHIPPER\tACME DC\n4800 MAIN DR\nLOUISVILLE, KY 40209\nCONSIGNEE\tSTORE 9\n1 FULTON BLVD\nATLANTA, GA 30336"
    assert lane(text) == (us("Louisville", "KY", "40209"), us("Atlanta", "GA", "30336"))


def test_it_takes_the_first_pickup_and_the_last_drop() -> None:
    text = "PU1: Reno, NV 89502\nPU2: Sparks, NV 89431\nDrop 1: Sacramento, CA 95815\nDrop 2: Fresno, CA 93725"
    assert lane(text) == (us("Reno", "NV", "89502"), us("Fresno", "CA", "93725"))


def test_it_leaves_an_address_line_out_of_a_lane_it_completes_by_position() -> None:
    text = "to Atlanta, GA 30336\n\nAcme | 100 Main St, Irving, TX 75039 | 972-555-0100"
    assert lane(text) == (None, us("Atlanta", "GA", "30336"))


def test_it_reads_spanish_and_french_lanes() -> None:
    assert lane("de Monterrey, NL 64000 a Laredo, TX 78045")[1] == us("Laredo", "TX", "78045")
    assert lane("de Laval, QC H7L 5A1 à Toronto, ON M9W 1B3")[1] == Location("Toronto", "ON", "M9W 1B3", "CA")


@pytest.mark.parametrize(("location", "precision", "expected"), [
    (Location("Dallas", "TX", None, "US"), "city_state_or_postal", True),
    (Location(None, None, "75207", "US"), "city_state_or_postal", True),
    (Location("Dallas", None, None, "US"), "city_state_or_postal", False),
    (Location("Dallas", "TX", None, "US"), "postal", False),
    (None, "city_state_or_postal", False),
])
def test_it_says_whether_a_place_is_precise_enough_to_price(location: Location | None, precision: str,
                                                             expected: bool) -> None:
    assert precise(location, precision) is expected


def test_it_completes_a_lane_by_position_on_a_line_that_starts_with_a_count() -> None:
    assert lane("18 pallets, Pharr, TX 78577 to Bronx, NY 10474") == (us("Pharr", "TX", "78577"),
                                                                     us("Bronx", "NY", "10474"))


def test_it_reads_where_the_freight_is_as_the_origin() -> None:
    assert lane("Deliver to Atlanta, GA 30336. The load is at Dallas, TX 75207.") == (
        us("Dallas", "TX", "75207"), us("Atlanta", "GA", "30336"))


def test_it_reads_a_state_code_written_in_title_case_after_a_known_city() -> None:
    assert lane("Dallas, Tx 75207 to Atlanta, Ga 30336") == (us("Dallas", "TX", "75207"), us("Atlanta", "GA", "30336"))
    assert find_mentions("Hi Tom, Ok with me") == []
