"""Dates against the Date header, and which is the pickup and which the delivery."""

from __future__ import annotations

import datetime as dt

import pytest

from classifier.dates import date_roles, find_dates, language, pick_dates

MONDAY = dt.date(2026, 3, 9)


def resolve(phrase: str, base: dt.date = MONDAY, *, dmy: bool = False) -> dt.date | None:
    found = find_dates(phrase, base, dmy=dmy)
    return found[0].value if found else None


def pickup_and_delivery(text: str, base: dt.date = MONDAY) -> tuple[str | None, str | None]:
    picked = pick_dates([("body", date_roles(text, find_dates(text, base)))])
    return (picked.pickup.isoformat() if picked.pickup else None,
            picked.delivery.isoformat() if picked.delivery else None)


@pytest.mark.parametrize(("phrase", "expected"), [
    ("today", "2026-03-09"), ("tomorrow", "2026-03-10"), ("Thursday", "2026-03-12"), ("Thu", "2026-03-12"),
    ("next Monday", "2026-03-16"), ("Monday", "2026-03-16"), ("Mon-Tue next week", "2026-03-16"),
    ("Thursday next week", "2026-03-19"), ("3/16", "2026-03-16"), ("03/16/2026", "2026-03-16"),
    ("2026-03-16", "2026-03-16"), ("March 16", "2026-03-16"), ("Mar 16th", "2026-03-16"),
    ("16 de marzo", "2026-03-16"), ("le 16 mars", "2026-03-16"), ("mañana", "2026-03-10"),
    ("demain", "2026-03-10"), ("the 15th", "2026-03-15"), ("3/30-3/31", "2026-03-30"), ("2/1", "2027-02-01"),
])
def test_it_resolves_phrases_against_the_message_date(phrase: str, expected: str) -> None:
    assert resolve(phrase) == dt.date.fromisoformat(expected)


def test_it_rolls_weekdays_and_month_days_into_the_next_year() -> None:
    wednesday_30_dec = dt.date(2026, 12, 30)
    assert resolve("Monday", wednesday_30_dec) == dt.date(2027, 1, 4)
    assert resolve("1/4", wednesday_30_dec) == dt.date(2027, 1, 4)


def test_it_reads_day_first_in_spanish_and_french_mail() -> None:
    assert resolve("16/03", dmy=True) == dt.date(2026, 3, 16)
    assert language("Bonjour, pourriez-vous nous faire une soumission pour la livraison? Merci") == "fr"
    assert language("Buenos días, necesito una cotización para el lunes, por favor") == "es"
    assert language("Please quote the load below for Friday") == "en"


@pytest.mark.parametrize("text", ["24/7 dispatch", "May we ship 5 pallets", "por la mañana", "the 2nd load"])
def test_it_does_not_read_dates_that_are_not_there(text: str) -> None:
    assert resolve(text) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("PU: Dallas, TX 75207 - tomorrow\nDEL: Atlanta, GA 30336 - Thursday by noon", ("2026-03-10", "2026-03-12")),
    ("Loads Saturday, deliver Tuesday AM appt", ("2026-03-14", "2026-03-17")),
    ("Need a reefer rate for a Monday pickup after the holiday:", ("2026-03-16", None)),
    ("Available for pickup Thursday, LFD is Friday.", ("2026-03-12", None)),
    ("Pickup Tuesday 8am, deliver same day", ("2026-03-10", "2026-03-10")),
    ("Customer wants numbers by 3pm today. Loading 3/11, deliver 3/12.", ("2026-03-11", "2026-03-12")),
    ("Need power only today.", ("2026-03-09", None)),
    ("Pickup Friday 3/13, delivery Monday", ("2026-03-13", "2026-03-16")),
])
def test_it_tells_the_pickup_from_the_delivery_by_the_nearest_cue(text: str, expected: tuple) -> None:
    assert pickup_and_delivery(text) == expected
