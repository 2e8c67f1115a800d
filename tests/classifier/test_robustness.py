"""Any bytes in, a result out: random and mutated MIME never makes classify() raise."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier import CATEGORIES, classify, detect_noise

CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpus" / "messages").glob("*.eml"))
SAMPLES = [path.read_bytes() for path in CORPUS]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(raw: bytes, *, strict: bool = False) -> None:
    result = classify(raw)
    assert result.category in CATEGORIES
    json.dumps(result.to_schema_dict(file="x.eml"))
    detect_noise(raw)
    if strict and result.error:
        # classify() turns its own bugs into errors too; a mutated message must not hit one.
        assert result.error.startswith(("no RFC 5322 header", "empty message")), result.error


def nest(raw: bytes, depth: int) -> bytes:
    """`raw` attached as message/rfc822 inside `depth` wrapping messages."""
    for level in range(depth):
        raw = (b"From: a@b.example\r\nSubject: Fwd %d\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\nContent-Type: text/plain\r\n\r\nsee '
               b"attached\r\n--n%d\r\nContent-Type: message/rfc822\r\n\r\n" % (level, level, level, level)
               + raw + b"\r\n--n%d--\r\n" % level)
    return raw


MUTATIONS = {
    "truncate": lambda raw, n, junk: raw[: n % (len(raw) + 1)],
    "cut a slice": lambda raw, n, junk: raw[: n % len(raw)] + raw[(n * 7) % len(raw):],
    "insert junk": lambda raw, n, junk: raw[: n % len(raw)] + junk + raw[n % len(raw):],
    "break the boundaries": lambda raw, n, junk: raw.replace(b"_hlf", junk[:3] or b"?", 1 + n % 3),
    "bad charset": lambda raw, n, junk: raw.replace(b'charset="utf-8"', b'charset="x-' + junk[:8].hex().encode()
                                                    + b'"'),
    "truncated base64": lambda raw, n, junk: raw.replace(b"\r\n\r\nJVBER", b"\r\n\r\nJVB", 1)
                                                .replace(b"==\r\n", b"=\r\n"),
    "huge header": lambda raw, n, junk: b"Subject: " + b"SHP-104233 " * (2000 + n % 5000) + b"\r\n" + raw,
    "header folding storm": lambda raw, n, junk: b"X-Fold: a\r\n" + b"\t" + b"b\r\n\t" * (500 + n % 500) + raw,
    "nested messages": lambda raw, n, junk: nest(raw, 1 + n % 12),
    "no separator": lambda raw, n, junk: raw.replace(b"\r\n\r\n", b"\r\n", 1),
    "8-bit headers": lambda raw, n, junk: raw.replace(b"Subject: ", b"Subject: \xe9\xff" + junk[:4], 1),
    "lf only": lambda raw, n, junk: raw.replace(b"\r\n", b"\n"),
}


@SETTINGS
@given(st.binary(max_size=4096))
def test_it_survives_random_bytes(raw: bytes) -> None:
    check(raw)


@SETTINGS
@given(st.sampled_from(SAMPLES), st.sampled_from(sorted(MUTATIONS)), st.integers(min_value=0, max_value=10**6),
       st.binary(max_size=64))
def test_it_survives_mutated_corpus_messages(raw: bytes, mutation: str, n: int, junk: bytes) -> None:
    check(MUTATIONS[mutation](raw, n, junk), strict=True)


@SETTINGS
@given(st.text(max_size=2000))
def test_it_survives_any_text_as_a_body(text: str) -> None:
    check(b"From: a@b.example\r\nSubject: t\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
          + text.encode("utf-8", "surrogatepass"), strict=True)


def test_it_gives_other_with_an_error_for_what_is_not_a_message() -> None:
    for junk in (b"", b"\x00\xff\xfe" * 100, b"%PDF-1.4\n" + b"\x00" * 50):
        result = classify(junk)
        assert result.category == "other"
        assert result.error


def test_it_still_reads_a_ref_from_a_message_with_a_broken_multipart() -> None:
    raw = (b"From: a@b.example\r\nSubject: POD SHP-104233\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="gone"\r\n\r\nno boundary ever appears\r\n')
    result = classify(raw)
    assert result.shipment_refs == ("SHP-104233",)
    assert result.category == "operations"


def test_it_reads_a_megabyte_of_dense_text_in_bounded_time() -> None:
    # Every word a state or province name, on one endless line: the worst case for place finding.
    raw = (b"From: a@b.example\r\nSubject: Please quote\r\n\r\n" + b"Dallas Texas Ontario Quebec, QC " * 33000
           + b"\r\nSHP-104233")
    start = time.process_time()
    result = classify(raw)
    assert time.process_time() - start < 30
    assert result.shipment_refs == ("SHP-104233",)
