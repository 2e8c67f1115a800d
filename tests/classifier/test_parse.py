"""The one MIME pass: headers, the body we read, the attachments we list."""

from __future__ import annotations

import base64
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.parse import Headers, html_to_text, message_body, parse_headers, parse_message, plain_forms

from .mail import mail


def multipart(*parts: str, subtype: str = "mixed") -> bytes:
    body = "".join(f"--B\r\n{part}\r\n" for part in parts)
    return (f"From: Pat <pat@x.example>\r\nSubject: t\r\nDate: Mon, 09 Mar 2026 08:00:00 -0500\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/{subtype}; boundary=\"B\"\r\n\r\n{body}--B--\r\n").encode()


def test_it_reads_the_headers_the_result_reports() -> None:
    parsed = parse_message(mail("x", subject="=?utf-8?q?Cotizaci=C3=B3n?= Monterrey", headers={
        "In-Reply-To": "<a@b>", "References": "<r1@b> <a@b>"}))
    assert parsed.subject == "Cotización Monterrey"
    assert (parsed.from_name, parsed.from_addr) == ("Pat Doe", "pat@shipper.example")
    assert parsed.date is not None and parsed.date.isoformat() == "2026-03-09T08:42:00-05:00"
    assert (parsed.message_id, parsed.in_reply_to, parsed.references) == ("<test.1@shipper.example>", "<a@b>",
                                                                          ("<r1@b>", "<a@b>"))


def test_it_reads_only_the_headers_when_asked() -> None:
    headers = parse_headers(mail("x", headers={"Precedence": "bulk"}))
    assert headers.get("precedence") == "bulk"
    assert "Precedence" in headers


def test_it_prefers_the_plain_text_alternative() -> None:
    raw = multipart('Content-Type: text/plain; charset="utf-8"\r\n\r\nplain words',
                    'Content-Type: text/html; charset="utf-8"\r\n\r\n<p>html words</p>', subtype="alternative")
    assert parse_message(raw).body == "plain words"


def test_it_turns_an_html_only_body_into_lines_and_tab_separated_cells() -> None:
    text = html_to_text("<html><head><style>p{}</style></head><body><p>Hi &amp; bye<br>line 2</p>"
                        "<table><tr><th>Origin</th><td>Dallas, TX</td></tr></table><script>x=1</script></body></html>")
    assert "Hi & bye\nline 2" in text
    assert "Origin\tDallas, TX" in text
    assert "x=1" not in text and "p{}" not in text


def test_it_marks_an_html_blockquote_as_the_start_of_quoted_text() -> None:
    assert "\x1e" in html_to_text("<p>ok</p><blockquote><p>old</p></blockquote>")


def test_it_decodes_base64_and_quoted_printable_bodies_in_their_charset() -> None:
    b64 = base64.b64encode("Caja seca, 20 tarimas, mañana".encode("latin-1")).decode()
    raw = multipart(f'Content-Type: text/plain; charset="iso-8859-1"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}',
                    'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
                    "Deliver to Montr=C3=A9al, QC =\r\nH2X 1Y4")
    body = parse_message(raw).body
    assert "mañana" in body and "Deliver to Montréal, QC H2X 1Y4" in body


def test_it_falls_back_when_the_declared_charset_is_wrong_or_unknown() -> None:
    raw = mail("", charset="utf-8").replace(b'charset="utf-8"', b'charset="x-unknown"') + "Québec".encode("latin-1")
    assert "Québec" in parse_message(raw).body


def test_it_lists_attachments_but_not_inline_signature_images() -> None:
    raw = multipart('Content-Type: text/plain\r\n\r\nsee attached',
                    'Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline; filename="image001.png"'
                    "\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=",
                    'Content-Type: application/pdf; name="BOL 1.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=',
                    'Content-Type: image/png\r\nContent-Disposition: attachment; filename="IMG_1.png"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=")
    parsed = parse_message(raw)
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [("BOL 1.pdf", "application/pdf"),
                                                                          ("IMG_1.png", "image/png")]
    assert parsed.attachments[0].payload == b"%PDF-"


def test_it_keeps_the_text_of_attached_and_returned_messages_apart_from_the_body() -> None:
    raw = multipart("Content-Type: text/plain\r\n\r\nFYI below",
                    "Content-Type: message/rfc822\r\n\r\nFrom: a@b\r\nSubject: status\r\n\r\nWhere is SHP-104233?",
                    "Content-Type: text/rfc822-headers\r\n\r\nSubject: Load offer SHP-104301")
    parsed = parse_message(raw)
    assert parsed.body == "FYI below"
    assert any("SHP-104233" in text for text in parsed.nested)
    assert any("SHP-104301" in text for text in parsed.nested)


def test_it_says_when_there_are_no_headers_at_all() -> None:
    assert not parse_message(b"just some words\nand more").has_headers


_VARIANTS = {"\xa0": " ", "\u2007": " ", "\u202f": " ", "\u200b": "", "\ufeff": "", "\r": "", "\u2013": "-",
             "\u2014": "-", "\u2212": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2032": "'",
             "\u2033": '"'}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*_VARIANTS, "a", "é", " ", "\n", "-", "'", '"', "\u2026"]), max_size=60))
def test_it_reads_typographic_variants_as_their_plain_forms(text: str) -> None:
    assert plain_forms(text) == text.translate({ord(old): new for old, new in _VARIANTS.items()})


_HEADER_LINES = ["From: Pat <pat@x.example>", "Subject: rate", "Precedence: bulk", " folded", "\tfolded",
                 "Content-Type: multipart/report; report-type=delivery-status", "not a header", "", "List-Id: x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_HEADER_LINES), st.sampled_from(["\r\n", "\n", "\r"])), max_size=12))
def test_it_reads_the_same_headers_from_the_header_section_alone(lines: list[tuple[str, str]]) -> None:
    raw = "".join(line + end for line, end in lines).encode() + b"body line\r\n" * 3
    whole = Headers(BytesHeaderParser(policy=compat32).parsebytes(raw))
    mine = parse_headers(raw)
    assert [(name, mine.get(name)) for name in mine.names()] == [(name, whole.get(name)) for name in whole.names()]
    assert (mine.content_type, mine.report_type) == (whole.content_type, whole.report_type)


def test_it_answers_the_headers_and_body_of_the_message_it_just_parsed_from_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = mail("Need a rate", subject="one"), mail("Book it", subject="two")
    parsed = parse_message(first)
    copy = bytes(bytearray(first))  # equal bytes, another object
    assert message_body(copy) == parsed.body == "Need a rate"
    assert parse_headers(copy) is parsed.headers
    assert message_body(second) == "Book it"            # another message is parsed
    assert parse_headers(second).get("Subject") == "two"
    monkeypatch.setattr("classifier.parse._REMEMBER_BYTES", 10)
    parsed = parse_message(first)
    assert parse_headers(first) is not parsed.headers  # too large to keep


def test_it_reads_only_bytes_from_memory() -> None:
    raw = mail("x")
    parse_message(raw)
    with pytest.raises(AttributeError):
        parse_headers(memoryview(raw))  # type: ignore[arg-type]  # as the header parser does
