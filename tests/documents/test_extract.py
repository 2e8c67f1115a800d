"""Text extraction: bounded, and every unreadable file comes out as ExtractionError with a reason."""

from __future__ import annotations

import time

import pytest

from documents.extract import ExtractionError, Limits, extract_text
from tests.documents.pdfs import bomb_pdf, broken_pdf, encrypted_pdf, make_pdf

LIMITS = Limits(max_pages=3, max_chars=5000, max_inflated=2 * 1024 * 1024, seconds=10)


def pdf(payload: bytes, limits: Limits = LIMITS) -> str:
    return extract_text(payload=payload, filename="x.pdf", content_type="application/pdf", limits=limits).text


def test_it_reads_the_text_layer_of_plain_and_compressed_pdfs() -> None:
    assert "Ref: SHP-105777" in pdf(make_pdf("BILL OF LADING\nBroker: Harborline   Ref: SHP-105777"))
    assert "PRO: RT-33817" in pdf(make_pdf("PRO: RT-33817", compress=True))


def test_it_reads_only_the_first_pages_and_caps_the_text() -> None:
    result = extract_text(payload=make_pdf(*[f"page {i}" for i in range(10)]), filename="a.pdf",
                          content_type="application/pdf", limits=LIMITS)
    assert result.pages == 10 and result.truncated
    assert "page 2" in result.text and "page 3" not in result.text
    long = extract_text(payload=make_pdf("\n".join(["SHP-100001 " * 10] * 100)), filename="a.pdf",
                        content_type="application/pdf", limits=LIMITS)
    assert len(long.text) == LIMITS.max_chars and long.truncated


def test_it_refuses_a_decompression_bomb_quickly() -> None:
    bomb = bomb_pdf(64 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    started = time.monotonic()
    with pytest.raises(ExtractionError, match="decompression bomb"):
        pdf(bomb)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("payload", "reason"), [
    (broken_pdf(), "malformed PDF"),
    (b"<html>not a pdf</html>", "malformed PDF: the file does not start with a PDF header"),
    (encrypted_pdf("secret"), "encrypted PDF: it needs a password to be read"),
])
def test_it_explains_what_it_cannot_read(payload: bytes, reason: str) -> None:
    with pytest.raises(ExtractionError, match=reason):
        pdf(payload)


def test_it_opens_a_pdf_encrypted_with_an_empty_password() -> None:
    assert "open to all" in pdf(encrypted_pdf("open to all", password=""))


def test_it_reads_text_and_csv_and_keeps_images_without_text() -> None:
    csv = extract_text(payload=b'ref;note\n"SHP-100200";"late, 2h"\n', filename="loads.csv",
                       content_type="text/csv")
    assert csv.text.splitlines() == ["ref\tnote", "SHP-100200\tlate, 2h"]
    latin = extract_text(payload="Entrega confirmada: Núñez".encode("cp1252"), filename="note.txt",
                         content_type="text/plain")
    assert latin.text == "Entrega confirmada: Núñez"
    image = extract_text(payload=b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, filename="IMG_1.png", content_type="image/png")
    assert (image.text, image.method) == ("", "none")
