"""Hostile mail: generated and mutated messages through the parse and classify paths with 0 uncaught
exceptions, and malformed messages through the whole pipeline (APPEND to Dovecot -> poll) recorded with
their error while the rest of the same poll is processed."""

from __future__ import annotations

import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import classifier
from mailboxes.intake import IntakeContext, IntakeResult
from mailboxes.models import InboundMessage, Mailbox
from mailboxes.reading import _Meta, mailbox_poll, normalise_message_id
from tests.mailboxes.reading_support import append, make_reader
from tests.reliability.support import mail, summary
from tms.accounts.models import Staff

CORPUS = sorted((Path(__file__).resolve().parent.parent / "corpus" / "messages").glob("*.eml"))
SEEDS = [p.read_bytes() for p in CORPUS]

HEADER_NAMES = [b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID", b"In-Reply-To", b"References",
                b"Content-Type", b"Content-Transfer-Encoding", b"Content-Disposition", b"MIME-Version",
                b"Auto-Submitted", b"Precedence", b"List-Id", b"Return-Path", b"X-Spam", b"Reply-To"]
NASTY = [b"", b"\x00", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"=?utf-8?b?", b"=?x-unknown?q?=FF=FE?=", b"=?", b"?=",
         b"<", b">", b"<<>>", b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"boundary=", b'boundary=""',
         b"multipart/mixed", b"multipart/mixed; boundary=X", b"--X", b"--X--", b"base64", b"quoted-printable",
         b"charset=utf-16", b"charset=x-bogus", b"=\r\n", b"=ZZ", b"SHP-", b"SHP-000123", b"SHP-99999999999999999999",
         b"filename*=utf-8''%FF%FE", b"name=\"a\x00b.pdf\"", b"application/pdf", b"%PDF-1.4", b"\t", b" " * 300,
         b"A" * 5000, b"1970", b"Mon, 99 Foo 99999 99:99:99 +9999", b"(comment (nested (deep)))", b"\"unterminated",
         b"\\", b"@", b"@@", b",,,,", b";;;;", b"{", b"\x1b[31m", "\u202e".encode(), "Zürich, ON".encode(),
         b"ZIP 90210", b"53' dry van", b"pickup", b"quote", b"RE: RE: FW:", b"Delivery Status Notification"]

header_value = st.lists(st.one_of(st.sampled_from(NASTY), st.binary(max_size=40),
                                  st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass"))),
                        max_size=6).map(b"".join)
header_line = st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), st.binary(min_size=1, max_size=12)),
                        st.sampled_from([b": ", b":", b" : ", b"\t:", b""]), header_value,
                        st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n "]))


@st.composite
def generated(draw: Any) -> bytes:
    """A message built from hostile parts: headers, an optional MIME tree, a body."""
    lines = draw(st.lists(header_line, max_size=14))
    head = b"".join(n + s + v + e for n, s, v, e in lines)
    depth = draw(st.integers(min_value=0, max_value=4))
    body = draw(st.one_of(st.binary(max_size=300), header_value))
    for level in range(depth):
        boundary = draw(st.sampled_from([b"X", b"", b"=_b", b"--", f"b{level}".encode()]))
        kind = draw(st.sampled_from([b"multipart/mixed", b"multipart/alternative", b"message/rfc822",
                                     b"text/html", b"application/pdf", b"multipart/related"]))
        enc = draw(st.sampled_from([b"base64", b"quoted-printable", b"7bit", b"x-uuencode", b"", b"8bit"]))
        closing = draw(st.booleans())
        body = (b"--" + boundary + b"\r\nContent-Type: " + kind + b"; boundary=" + boundary
                + b"\r\nContent-Transfer-Encoding: " + enc + b"\r\nContent-Disposition: attachment; filename=\""
                + draw(st.sampled_from(NASTY)) + b".pdf\"\r\n\r\n" + body + b"\r\n"
                + (b"--" + boundary + b"--\r\n" if closing else b""))
        head += b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n"
    return head + draw(st.sampled_from([b"\r\n", b"\n", b""])) + body


@st.composite
def mutated(draw: Any) -> bytes:
    """A real message of the corpus, damaged: bytes flipped, cut, spliced, repeated, lines broken."""
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        op = draw(st.integers(min_value=0, max_value=6))
        at = draw(st.integers(min_value=0, max_value=max(len(raw) - 1, 0)))
        if op == 0 and raw:
            raw[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == 1:
            raw = raw[:at]
        elif op == 2:
            raw[at:at] = draw(st.sampled_from(NASTY))
        elif op == 3:
            end = min(len(raw), at + draw(st.integers(min_value=1, max_value=200)))
            raw[at:at] = raw[at:end] * draw(st.integers(min_value=2, max_value=20))
        elif op == 4:
            raw = raw.replace(b"\r\n", draw(st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\n\r"])))
        elif op == 5:
            raw[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            raw = bytearray(bytes(raw).replace(b"boundary=", b"boundary=\x00", 1))
    return bytes(raw)


def parse_and_classify(raw: bytes) -> None:
    """What reading and the intake do with a message's bytes."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    meta = _Meta.from_fetch(1, {b"BODY[HEADER]": head, b"RFC822.SIZE": len(raw), b"INTERNALDATE": None})
    normalise_message_id(meta.message_id)
    normalise_message_id(head.decode("latin-1"))
    result = classifier.classify(raw, shipment_prefix="SHP")
    assert result.category in classifier.CATEGORIES
    classifier.detect_noise(raw)
    classifier.find_refs(raw.decode("utf-8", "replace"), "SHP")


@pytest.mark.parametrize("count", [pytest.param(2_000, id="quick"),
                                   pytest.param(100_000, id="slow", marks=pytest.mark.slow)])
def test_it_parses_and_classifies_hostile_mail_without_an_uncaught_exception(
    count: int, capsys: pytest.CaptureFixture[str],
) -> None:
    failures: dict[str, str] = {}
    seen = {"n": 0, "bytes": 0}
    started = time.monotonic()

    @settings(max_examples=count, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(raw=st.one_of(generated(), mutated()))
    def run(raw: bytes) -> None:
        seen["n"] += 1
        seen["bytes"] += len(raw)
        try:
            parse_and_classify(raw)
        except Exception as exc:
            key = f"{type(exc).__name__} at {traceback.extract_tb(exc.__traceback__)[-1][:3]}"
            failures.setdefault(key, repr(raw[:400]))

    run()
    summary(capsys, f"hostile mail: {seen['n']} generated/mutated messages ({seen['bytes'] // 1024} KiB) through "
                    f"header parsing, Message-ID normalisation and classify: {len(failures)} uncaught exception "
                    f"kinds, {time.monotonic() - started:.1f} s")
    assert seen["n"] >= count * 0.95
    assert not failures, "\n".join(f"{k}\n  example: {v}" for k, v in failures.items())


# ----------------------------------------------------------------------------- the whole pipeline

POISON = b"X-Poison: yes"


def poison_handler(message: InboundMessage, context: IntakeContext) -> IntakeResult | None:
    """A handler that cannot cope with some messages (a bug in a later version, a library's limit)."""
    if POISON in bytes(message.raw or b""):
        raise ValueError("the handler cannot read this message")
    return None


def malformed_messages() -> list[bytes]:
    deep = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(80))
    return [
        b"no headers at all, just a line of text\r\n",
        b"Subject: binary garbage\r\n\r\n" + bytes(range(1, 256)) * 20,
        b"Subject: " + b"A" * 20_000 + b"\r\nFrom: a@b.test\r\n\r\nlong header\r\n",
        b"From: x@y.test\r\nSubject: broken mime\r\nContent-Type: multipart/mixed; boundary=\"zz\r\n\r\n--zz\r\nno end",
        b"From: x@y.test\r\nSubject: bad base64\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n!!!!====@@@\r\n",
        b"From: x@y.test\r\nSubject: unknown charset\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\n\xff\xfe\xfd\r\n",
        "From: Jos\u00e9 <j@y.test>\r\nSubject: 8-bit h\u00e9aders \u20ac\r\n\r\nbody\r\n".encode(),
        b"From: x@y.test\r\nSubject: no message id, date from the future\r\nDate: Fri, 31 Dec 9999 23:59:59 +1400\r\n"
        b"\r\nbody\r\n",
        b"From: x@y.test\r\nSubject: year overflow\r\nDate: Fri, 02 Oct 202666666666666 14:12:00 -0500\r\n\r\nb\r\n",
        b"From: x@y.test\r\nSubject: deep nesting\r\n" + deep + b"body\r\n",
        b"From: =?utf-8?b?!!!?= <x@y.test>\r\nSubject: =?x-bogus?q?=ZZ?= SHP-99999999999999999999999\r\n\r\nb\r\n",
        b"From: x@y.test\r\nMessage-ID: <<<>>>\r\nIn-Reply-To: <\r\nReferences: > > <a@b\r\nSubject: ids\r\n\r\nb\r\n",
        b"From: x@y.test\r\nSubject: poison one\r\n" + POISON + b"\r\nMessage-ID: <poison-1@y.test>\r\n\r\nb\r\n",
        b"From: x@y.test\r\nSubject: poison two\r\n" + POISON + b"\r\nMessage-ID: <poison-2@y.test>\r\n\r\nb\r\n",
    ]


@pytest.fixture
def pipeline_settings(settings: Any, dovecot: Any) -> Any:
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True
    settings.MAILBOX_CA_FILE = str(dovecot.certs.ca)
    settings.REDIS_URL = ""
    settings.MAILBOX_MAX_ATTEMPTS = 3
    settings.MAILBOX_INTAKE_HANDLERS = [*settings.MAILBOX_INTAKE_HANDLERS,
                                        "tests.reliability.test_hostile_mail.poison_handler"]
    return settings


def test_it_records_malformed_mail_with_its_error_and_processes_the_rest_of_the_poll(
    pipeline_settings: Any, dovecot: Any, bob: Staff, capsys: pytest.CaptureFixture[str],
) -> None:
    box = make_reader(bob, dovecot, post_processing=Mailbox.PostProcessing.ARCHIVE)
    good_ids = []
    appended_bad = 0
    refused_by_server = 0
    bad = malformed_messages()
    for index, raw in enumerate(bad):
        good_id = f"<good-{index}-{uuid.uuid4().hex}@t>"
        good = mail(f"Quote request {index}: Dallas, TX to Atlanta, GA", message_id=good_id,
                    body="Please quote 40,000 lbs dry van.\n")
        good_ids.append(good_id)
        append(dovecot, box.email_address, good)
        try:
            append(dovecot, box.email_address, raw)
            appended_bad += 1
        except Exception:
            refused_by_server += 1
    started = time.monotonic()
    first = mailbox_poll(mailbox_id=box.pk, explicit=True)
    assert not first.error, first.error
    rows = list(InboundMessage.unscoped.filter(mailbox=box))
    by_id = {r.message_id: r for r in rows}
    assert all(by_id[m].status in ("processed", "ignored") for m in good_ids), [
        (m, by_id.get(m) and by_id[m].status) for m in good_ids]
    assert len(rows) == len(good_ids) + appended_bad          # nothing lost, nothing stored twice
    failed = [r for r in rows if r.status in ("failed", "quarantined")]
    assert {r.message_id for r in failed} == {"<poison-1@y.test>", "<poison-2@y.test>"}
    assert all("cannot read this message" in r.error for r in failed)
    # Later polls retry the failed ones (until quarantined) and still block nothing.
    second = mailbox_poll(mailbox_id=box.pk, explicit=True)
    third = mailbox_poll(mailbox_id=box.pk, explicit=True)
    assert not second.error and not third.error
    statuses = dict(InboundMessage.unscoped.filter(mailbox=box).values_list("message_id", "status"))
    assert statuses["<poison-1@y.test>"] == "quarantined"
    done = sum(1 for s in statuses.values() if s in ("processed", "ignored"))
    summary(capsys, f"hostile pipeline: {len(good_ids)} good + {appended_bad} malformed APPENDed "
                    f"({refused_by_server} refused by Dovecot); poll 1: {first.as_json()}; "
                    f"{done} processed/ignored, {len(failed)} recorded with their error, quarantined after 3 "
                    f"attempts; {time.monotonic() - started:.1f} s")
