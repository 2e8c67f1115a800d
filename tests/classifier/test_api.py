"""The public API: classify() and its result in the SCHEMA.md shape."""

from __future__ import annotations

import json

from classifier import CATEGORIES, Classification, classify, detect_noise, find_refs

from .mail import mail, simple_pdf


def test_it_returns_exactly_the_schema_shape_plus_reason_confidence_and_signals() -> None:
    result = classify(mail("Please quote Dallas, TX 75207 to Atlanta, GA 30336, 18 pallets, 36,000 lbs, 53' van.",
                           attachments=[("BOL_1.pdf", "application/pdf", simple_pdf(["BILL OF LADING"]))]))
    out = result.to_schema_dict(file="017.eml")
    assert list(out)[:5] == ["file", "category", "shipment_refs", "fields", "attachments"]
    assert set(out) == {"file", "category", "shipment_refs", "fields", "attachments", "reason", "confidence",
                        "signals"}
    assert set(out["fields"]) == {"origin", "destination", "pickup_date", "delivery_date", "weight_lbs", "pieces",
                                  "equipment", "commodity", "hazmat"}
    assert out["attachments"] == [{"filename": "BOL_1.pdf", "kind": "bol"}]
    assert 0 < out["confidence"]["origin"] <= 1
    json.dumps(out)


def test_it_nulls_the_fields_of_operations_and_other() -> None:
    out = classify(mail("Where is SHP-104233? It left Dallas, TX 75207 for Atlanta, GA 30336.")).to_schema_dict()
    assert out["category"] == "operations"
    assert out["fields"]["origin"] is None and out["fields"]["hazmat"] is False


def test_it_reports_the_message_identity() -> None:
    result = classify(mail("x", subject="Re: SHP-104233", headers={"In-Reply-To": "<prev@b>",
                                                                 "References": "<first@b> <prev@b>"}))
    assert isinstance(result, Classification)
    assert (result.message_id, result.in_reply_to, result.references) == ("<test.1@shipper.example>", "<prev@b>",
                                                                          ("<first@b>", "<prev@b>"))
    assert (result.subject, result.from_addr) == ("Re: SHP-104233", "pat@shipper.example")
    assert result.date is not None and result.date.year == 2026
    assert result.category in CATEGORIES


def test_it_takes_the_shipment_prefix_of_the_tenant() -> None:
    result = classify(mail("Where are HLF-204233 and SHP-104233?"), shipment_prefix="HLF")
    assert result.shipment_refs == ("HLF-204233",)


def test_it_offers_cheap_helpers_for_other_code() -> None:
    assert find_refs("POD for SHP 104233") == ["SHP-104233"]
    assert detect_noise(mail("away", headers={"Auto-Submitted": "auto-replied"})) == "Auto-Submitted: auto-replied"


def test_it_never_raises_for_what_it_is_given() -> None:
    for junk in (b"", b"   ", "not bytes", None, b"\x00" * 10):
        result = classify(junk)  # type: ignore[arg-type]
        assert result.category == "other" and result.error
        assert "error" in result.to_schema_dict()
