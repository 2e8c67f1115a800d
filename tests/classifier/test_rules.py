"""The category: SCHEMA.md's first rule that fits, with the tenant's "enough detail" rule."""

from __future__ import annotations

import pytest

from classifier import Rules, classify
from classifier.rules import intent_in, subject_intent

from .mail import mail

QUOTE = "Please quote a van from Dallas, TX to Atlanta, GA 30336, 20 pallets, Friday."


@pytest.mark.parametrize("text", [
    "Please quote a flatbed", "Can you quote this?", "Need a reefer rate", "Need a hotshot (40' gooseneck) rate",
    "What would you charge for a van?", "What's your best number?", "Can you send me your best rate",
    "rate please", "We have a recurring lane we'd like priced", "Can I get a rate on this?", "RFQ below",
    "How much for a reefer?", "Requesting a quote", "¿Me puede cotizar una caja seca?", "Une soumission SVP",
    "Any update on pricing for this one?",
])
def test_it_hears_a_request_for_a_rate(text: str) -> None:
    assert intent_in(text, "body").quote


@pytest.mark.parametrize("text", [
    "We accept your quote on SHP 105002.", "Rate per Tom: $1,150 all-in", "16 rolls, same as quoted",
    "Please send the rate confirmation", "Need the quote number for the invoice", "Reply with your lanes for rates",
])
def test_it_does_not_hear_a_request_for_a_rate_where_there_is_none(text: str) -> None:
    assert not intent_in(text, "body").quote


@pytest.mark.parametrize("text", [
    "Book me a flatbed", "Please dispatch a reefer", "Please arrange a pickup", "Please schedule pickup",
    "Please send a truck to pick up PO 88123", "Approved - please book it.", "Tendering the following load",
    "you have been tendered the following load", "Need a truck dispatched today", "Need power only today",
    "Can you cover this load?",
])
def test_it_hears_a_request_to_book(text: str) -> None:
    assert intent_in(text, "body").pickup


def test_it_hears_no_request_in_a_carriers_offer_of_capacity() -> None:
    found = intent_in("We have 4 trucks available in Dallas. Need a truck? Call for rates.", "body")
    assert not (found.quote or found.pickup)


def test_it_reads_a_subject_only_when_it_is_not_a_reply() -> None:
    assert subject_intent("Quote request - Dallas TX to Atlanta GA").quote
    assert not subject_intent("Re: Quote - Charlotte NC to Richmond VA").quote
    assert not subject_intent("Did SHP-105950 pick up?").pickup


def test_it_follows_the_schema_rule_order() -> None:
    assert classify(mail(QUOTE + " If the rate works, book it.")).category == "quote"
    assert classify(mail(QUOTE.replace("Please quote", "Please book"))).category == "pickup"
    assert classify(mail("Please quote a van out of Dallas, TX for SHP-104233")).category == "operations"
    assert classify(mail("Please quote a van out of Dallas, TX")).category == "other"


def test_it_explains_the_category() -> None:
    result = classify(mail(QUOTE))
    assert "asks for a rate" in result.reason and "both ends" in result.reason


def test_it_lets_a_tenant_require_postal_codes_at_both_ends() -> None:
    strict = Rules(lane_precision="postal")
    assert classify(mail(QUOTE), rules=strict).category == "other"
    assert classify(mail(QUOTE.replace("TX", "TX 75207")), rules=strict).category == "quote"


def test_it_lets_a_tenant_require_more_fields() -> None:
    rules = Rules(require=("weight_lbs",))
    assert classify(mail(QUOTE), rules=rules).category == "other"
    assert classify(mail(QUOTE + " 30,000 lbs."), rules=rules).category == "quote"


def test_it_refuses_rules_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="lane_precision"):
        Rules(lane_precision="exact")
    with pytest.raises(ValueError, match="require"):
        Rules(require=("colour",))


def test_it_keeps_bulk_mail_from_being_a_request_unless_the_tenant_allows_it() -> None:
    raw = mail(QUOTE, headers={"Precedence": "bulk"})
    assert classify(raw).category == "other"
    assert classify(raw, rules=Rules(requests_from_bulk=True)).category == "quote"


@pytest.mark.parametrize("text", ["Please confirm pickup for SHP-105233 tomorrow", "I need the pickup number",
                                  "Can we push the pickup to Friday?", "Did it pick up yesterday?"])
def test_it_does_not_hear_a_booking_in_questions_about_a_pickup(text: str) -> None:
    assert not intent_in(text, "body").pickup


@pytest.mark.parametrize("text", ["Approved - go ahead.", "OK, approved!", "Yes, go ahead with it",
                                  "Do you have a truck for this one?", "Looking for a truck Friday"])
def test_it_hears_an_acceptance_or_a_call_for_a_truck_as_a_booking(text: str) -> None:
    assert intent_in(text, "body").pickup


def test_it_does_not_take_go_ahead_and_send_for_a_booking() -> None:
    assert not intent_in("Please go ahead and send the POD.", "body").pickup
