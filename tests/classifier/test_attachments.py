"""Attachment kinds: from the file name, else from the document's own words."""

from __future__ import annotations

import pytest

from classifier.attachments import classify_attachment, quick_pdf_text

from .mail import simple_pdf


@pytest.mark.parametrize(("filename", "kind"), [
    ("BOL_88123.pdf", "bol"), ("BOL 7734120.pdf", "bol"), ("POD-1061877.pdf", "pod"), ("POD_SHP105677.pdf", "pod"),
    ("INV-20931.pdf", "invoice"), ("Harborline_RC_SHP105988.pdf", "rate_confirmation"),
    ("RateConfirmation_4471.pdf", "rate_confirmation"), ("PackingList_PO77102.pdf", "packing_list"),
    ("packing-slip.pdf", "packing_list"), ("USMCA_Certificate_of_Origin_NS2231.pdf", "customs"),
    ("CCI_SHP105412.pdf", "customs"), ("Commercial Invoice 88.pdf", "customs"), ("BillOfLading.pdf", "bol"),
])
def test_it_takes_the_kind_from_a_telling_file_name(filename: str, kind: str) -> None:
    assert classify_attachment(filename, "application/pdf", b"").kind == kind


@pytest.mark.parametrize(("lines", "title", "kind"), [
    (["PROOF OF DELIVERY", "Broker ref: SHP-106014", "BOL: 7741022"], "Scan 2026-06-12", "pod"),
    (["HARBORLINE FREIGHT - CARRIER RATE CONFIRMATION", "Pickup: Lafayette, LA"], "", "rate_confirmation"),
    (["STRAIGHT BILL OF LADING - NOT NEGOTIABLE"], "", "bol"),
    (["SAFETY DATA SHEET", "UN number: UN3480"], "Safety Data Sheet", "other"),
    (["CERTIFICATE OF LIABILITY INSURANCE"], "", "other"),
])
def test_it_reads_a_generic_names_pdf_to_find_the_kind(lines: list[str], title: str, kind: str) -> None:
    attachment = classify_attachment("scan_0001.pdf", "application/pdf", simple_pdf(lines, title))
    assert attachment.kind == kind


def test_it_keeps_the_payload_for_whoever_stores_the_document() -> None:
    payload = simple_pdf(["INVOICE"])
    attachment = classify_attachment("document.pdf", "application/pdf", payload)
    assert attachment.payload == payload and attachment.size == len(payload)
    assert attachment.to_dict() == {"filename": "document.pdf", "kind": "invoice", "content_type": "application/pdf",
                                    "size": len(payload)}


def test_it_makes_an_unreadable_or_image_attachment_other() -> None:
    assert classify_attachment("IMG_4412.png", "image/png", b"\x89PNG\r\n").kind == "other"
    assert classify_attachment("scan.pdf", "application/pdf", b"%PDF-1.4 garbage").kind == "other"


def test_it_reads_plain_content_streams_without_a_full_pdf_parser() -> None:
    title, text = quick_pdf_text(simple_pdf(["PACKING LIST", "PO: 88123 (rev 2)"], "Packing List"))
    assert title == "Packing List"
    assert text.splitlines() == ["PACKING LIST", "PO: 88123 (rev 2)"]
