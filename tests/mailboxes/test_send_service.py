"""The outbound service against the real test-bed servers: aiosmtpd, Dovecot, Postfix, OAuth."""

from __future__ import annotations

import email
import email.policy
import functools
import threading
from datetime import timedelta
from email.headerregistry import Address
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailboxes import sending
from mailboxes.models import InboundMessage, Mailbox, MailboxEvent, OutboundMessage
from mailboxes.signals import message_sent
from mailboxes.tasks.send import outbound_deliver
from tests.factories import make_mailbox
from tests.mailboxes.sending_support import (
    FakeClock,
    imap_mailbox,
    new_address,
    sent_folder_message_ids,
    sent_folder_raw,
)
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db

Status = OutboundMessage.Status


def _queue(mailbox: Mailbox, **kwargs: Any) -> OutboundMessage:
    values: dict[str, Any] = {"to": ["carrier@example.test"], "subject": "Rate request", "body_text": "Hello\n"}
    values.update(kwargs)
    return sending.message_queue(tenant=mailbox.tenant, staff=mailbox.staff, mailbox=mailbox, enqueue=False, **values)


def _parsed(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


# ----------------------------------------------------------------------------- submission


def test_it_sends_with_a_password_through_aiosmtpd_and_files_the_exact_bytes_in_dovecots_sent_folder(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    outbound = _queue(mailbox, subject="Pickup tomorrow", cc=["ops@example.test"], bcc=["audit@example.test"])

    result = sending.message_deliver(outbound_id=outbound.pk)

    assert result.status == Status.SENT
    got = smtp_server.wait_for(lambda m: m.message_id == outbound.message_id)
    assert got.server == "submission" and got.auth_user == mailbox.email_address
    assert set(got.rcpt_tos) == {"carrier@example.test", "ops@example.test", "audit@example.test"}
    assert "Bcc" not in _parsed(got.data)
    outbound.refresh_from_db()
    assert outbound.status == Status.SENT and outbound.attempts == 1 and not outbound.sent_copy_pending
    assert sent_folder_message_ids(dovecot, mailbox.email_address) == [outbound.message_id]
    filed = sent_folder_raw(dovecot, mailbox.email_address, outbound.message_id)
    assert filed == bytes(outbound.raw or b"")  # the exact bytes sent


def test_it_sends_through_postfix_in_front_of_dovecot_with_a_password(
    send_settings: Any, bob: Staff, dovecot: Any, postfix: Any, smtp_server: Any
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=postfix.port)
    outbound = _queue(mailbox, subject="Through Postfix")

    assert sending.message_deliver(outbound_id=outbound.pk).status == Status.SENT

    got = smtp_server.wait_for(lambda m: m.message_id == outbound.message_id, timeout=20)
    assert got.server == "sink"  # Postfix authenticated the user through Dovecot, then relayed
    assert outbound.message_id in sent_folder_message_ids(dovecot, mailbox.email_address)


def _oauth_mailbox(staff: Staff, provider: str, address: str, oauth_server: Any) -> Mailbox:
    tokens = oauth_server.token_for(address)
    return make_mailbox(
        staff, address, provider=provider, imap_host="", smtp_host="", secret=tokens.refresh_token,
        access_token=tokens.access_token, access_token_expires_at=timezone.now() + timedelta(hours=1),
        username=address, permission="send",
    )


def test_it_sends_with_xoauth2_through_aiosmtpd(
    send_settings: Any, bob: Staff, smtp_server: Any, oauth_server: Any
) -> None:
    send_settings.GOOGLE_SMTP_HOST = "127.0.0.1"
    send_settings.GOOGLE_SMTP_PORT = smtp_server.submissions_port
    send_settings.GOOGLE_SMTP_SECURITY = "ssl"
    mailbox = _oauth_mailbox(bob, "google", new_address(), oauth_server)
    outbound = _queue(mailbox)

    assert sending.message_deliver(outbound_id=outbound.pk).status == Status.SENT

    got = smtp_server.wait_for(lambda m: m.message_id == outbound.message_id)
    assert got.server == "submissions" and got.auth_user == mailbox.email_address
    outbound.refresh_from_db()
    assert not outbound.sent_copy_pending  # Google files SMTP-submitted mail in Sent itself


def test_it_sends_with_xoauth2_through_postfix_and_dovecots_oauth2_passdb(
    send_settings: Any, bob: Staff, dovecot: Any, postfix: Any, smtp_server: Any, oauth_server: Any
) -> None:
    send_settings.MICROSOFT_SMTP_HOST = "127.0.0.1"
    send_settings.MICROSOFT_SMTP_PORT = postfix.port
    send_settings.MICROSOFT_SMTP_SECURITY = "starttls"
    mailbox = _oauth_mailbox(bob, "microsoft", "alice@example.test", oauth_server)
    outbound = _queue(mailbox, subject="XOAUTH2 via Postfix")

    assert sending.message_deliver(outbound_id=outbound.pk).status == Status.SENT
    assert smtp_server.wait_for(lambda m: m.message_id == outbound.message_id, timeout=20).server == "sink"


def test_it_marks_an_oauth_mailbox_needing_reauthorization_when_smtp_refuses_the_token(
    send_settings: Any, bob: Staff, smtp_server: Any, oauth_server: Any
) -> None:
    send_settings.GOOGLE_SMTP_HOST = "127.0.0.1"
    send_settings.GOOGLE_SMTP_PORT = smtp_server.submissions_port
    send_settings.GOOGLE_SMTP_SECURITY = "ssl"
    mailbox = _oauth_mailbox(bob, "google", new_address(), oauth_server)
    outbound = _queue(mailbox)
    expired = oauth_server.mint(mailbox.email_address, exp=1)
    Mailbox.unscoped.filter(pk=mailbox.pk).update(access_token=expired)

    result = sending.message_deliver(outbound_id=outbound.pk)

    assert result.status == Status.FAILED and "re-authorization" in result.error
    mailbox.refresh_from_db()
    assert mailbox.status == Mailbox.Status.NEEDS_REAUTHORIZATION
    assert MailboxEvent.unscoped.filter(mailbox=mailbox, kind=MailboxEvent.Kind.NEEDS_REAUTHORIZATION).exists()


# ----------------------------------------------------------------------------- routing and headers


def test_it_relays_for_a_sender_without_a_mailbox_and_says_so_honestly(
    send_settings: Any, bob: Staff, smtp_server: Any
) -> None:
    send_settings.RELAY_SMTP_URL = f"smtp://127.0.0.1:{smtp_server.sink_port}"
    send_settings.RELAY_FROM_EMAIL = "assistant@tms.example"
    outbound = sending.message_queue(tenant=bob.tenant, staff=bob, to=["carrier@example.test"], subject="Quote",
                                     body_text="Hello", enqueue=False)
    assert outbound.route == "relay" and outbound.via_relay

    assert sending.message_deliver(outbound_id=outbound.pk).status == Status.SENT

    msg = smtp_server.wait_for(lambda m: m.message_id == outbound.message_id).message()
    assert msg["From"].addresses[0].addr_spec == "assistant@tms.example"
    assert msg["From"].addresses[0].display_name == "Bob Dispatch via Acme Logistics"
    assert msg["Reply-To"].addresses[0].addr_spec == "bob@acme.test"


def test_it_prefers_the_senders_default_active_mailbox(send_settings: Any, bob: Staff) -> None:
    send_settings.RELAY_SMTP_URL = "smtp://127.0.0.1:25"
    make_mailbox(bob, "old@example.test", status="disabled")
    default = make_mailbox(bob, "main@example.test", is_default=True)

    assert sending.route_choose(tenant=bob.tenant, staff=bob).mailbox == default
    Mailbox.unscoped.filter(pk=default.pk).update(status="needs_reauthorization")
    assert sending.route_choose(tenant=bob.tenant, staff=bob).kind == "relay"


def test_it_threads_shipment_mail_with_a_subject_tag_and_recognisable_message_ids(
    send_settings: Any, bob: Staff
) -> None:
    mailbox = make_mailbox(bob, new_address())
    outbound = _queue(mailbox, subject="Re: pickup", subject_tag="[SHP-000123]", in_reply_to="<parent@carrier.test>",
                      references=["<root@carrier.test>"], related="shipment:abc")

    msg = _parsed(bytes(outbound.raw or b""))
    assert msg["Subject"] == "[SHP-000123] Re: pickup"
    assert msg["In-Reply-To"] == "<parent@carrier.test>"
    assert str(msg["References"]).split() == ["<root@carrier.test>", "<parent@carrier.test>"]
    assert sending.is_our_message_id(outbound.message_id)
    assert sending.is_our_message_id(outbound.message_id.strip("<>"))
    assert not sending.is_our_message_id("<parent@carrier.test>")
    assert outbound.related == "shipment:abc"


@pytest.mark.parametrize("filename", [
    "契約書" * 40 + ".pdf",  # 123 characters, 1,080 octets as an RFC 2231 value
    "Счёт-фактура № 123 от 01.01.2026 " * 6 + ".pdf",
    "x" * 1200 + ".pdf",
    'a"; name="evil.exe',
    "Lieferschein Übersicht.pdf",
])
def test_it_folds_long_attachment_file_names_into_rfc_2231_continuations(
    send_settings: Any, bob: Staff, filename: str
) -> None:
    mailbox = make_mailbox(bob, new_address())
    outbound = _queue(mailbox, attachments=[sending.Attachment(filename, b"%PDF-1.4 data", "application/pdf")])

    raw = bytes(outbound.raw or b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78  # RFC 5322 2.1.1: never over 998
    attachment = next(_parsed(raw).iter_attachments())
    assert attachment.get_filename() == filename
    assert attachment.get_payload(decode=True) == b"%PDF-1.4 data"


def test_it_sends_to_an_internationalised_domain_by_its_punycode_name(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    outbound = _queue(mailbox, to=["Jörg Müller <jorg@bücher.example>"])

    assert outbound.recipients == ["jorg@xn--bcher-kva.example"]  # the envelope: ASCII without SMTPUTF8
    to_line = next(line for line in bytes(outbound.raw or b"").split(b"\r\n") if line.startswith(b"To:"))
    assert to_line.endswith(b" <jorg@xn--bcher-kva.example>")  # an encoded word is not allowed in a domain
    assert sending.message_deliver(outbound_id=outbound.pk).status == Status.SENT
    assert [m.rcpt_tos for m in smtp_server.messages if m.message_id == outbound.message_id] == [
        ("jorg@xn--bcher-kva.example",)]
    with pytest.raises(sending.SendRefused, match="not a usable domain"):
        _queue(mailbox, to=["someone@" + "ü" * 70 + ".example"])  # a label over 63 octets


OUTLOOK_ID = "<DM6PR11MB4107C9E6B2A7F9B5A0C8F0B6E6A09@DM6PR11MB4107.namprd11.prod.outlook.com>"  # 80 characters


@pytest.mark.parametrize("in_reply_to,references,wire_in_reply_to,wire_references", [
    (OUTLOOK_ID, [], [OUTLOOK_ID], [OUTLOOK_ID]),
    ("<a@b.test>", [f"<{n:032x}@tms.example.test>" for n in range(30)] + [OUTLOOK_ID],
     ["<a@b.test>"], [f"<{n:032x}@tms.example.test>" for n in range(30)] + [OUTLOOK_ID, "<a@b.test>"]),
    ("<" + "x" * 950 + "@long.test>", [OUTLOOK_ID], [], [OUTLOOK_ID]),  # no 998-octet line can hold it
    ("<zoë@example.test>", ["<root@example.test>"], [], ["<root@example.test>"]),  # not a msg-id on the wire
])
def test_it_writes_threading_headers_as_msg_ids_folded_between_ids_never_encoded(
    send_settings: Any, bob: Staff, in_reply_to: str, references: list[str], wire_in_reply_to: list[str],
    wire_references: list[str],
) -> None:
    mailbox = make_mailbox(bob, new_address())
    outbound = _queue(mailbox, in_reply_to=in_reply_to, references=references)

    head = bytes(outbound.raw or b"").split(b"\r\n\r\n", 1)[0].decode("ascii")
    fields: dict[str, str] = {}
    field = ""
    for line in head.split("\r\n"):
        assert len(line) <= 998
        if line[:1] in (" ", "\t"):
            fields[field] += line
        else:
            field, _, value = line.partition(":")
            fields[field] = value
    # RFC 2047 section 5: no encoded word in a msg-id; the recipient threads on these ids verbatim.
    assert fields.get("In-Reply-To", "").split() == wire_in_reply_to
    assert fields.get("References", "").split() == wire_references
    assert "=?" not in fields.get("In-Reply-To", "") + fields.get("References", "")
    assert all(len(line) <= 78 for line in head.split("\r\n") if len(line.split()) > 2)  # folded between ids
    assert outbound.in_reply_to == in_reply_to.strip()  # the row keeps what it was given


# Any one-line text: every character but CR, LF and NUL (refused before building), surrogates excluded.
_ONE_LINE = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=1200)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(subject=_ONE_LINE, name=_ONE_LINE.filter(lambda n: n.strip() == n))
def test_it_writes_any_one_line_subject_and_name_as_folded_ascii_that_reads_back_the_same(
    subject: str, name: str
) -> None:
    built = sending._build(
        from_addr=Address(display_name=name, addr_spec="dispatch@example.test"), reply_to=None,
        to=["carrier@example.test"], cc=(), bcc=(), subject=subject, body_text="Hello\n", body_html=None,
        attachments=(), in_reply_to=None, references=(), subject_tag=None,
    )

    head = built.raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    lines = head.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    # Every line is a header of its own or a continuation (starts with white space): nothing injected.
    assert [line.split(b":", 1)[0] for line in lines if line[:1] not in (b" ", b"\t")] == [
        b"From", b"To", b"Subject", b"Date", b"Message-ID", b"MIME-Version", b"Content-Type",
        b"Content-Transfer-Encoding"]
    msg = _parsed(built.raw)
    # White space aside: folding adds some, and the standard library's parser keeps a space between
    # two adjacent encoded words of different encodings in a display name (RFC 2047 6.2 drops it).
    assert "".join(msg["Subject"].split()) == "".join(subject.split())
    assert "".join(msg["From"].addresses[0].display_name.split()) == "".join(name.split())


@pytest.mark.parametrize("field,value", [
    ("subject", "Hello\r\nBcc: victim@example.test"),
    ("subject", "Hello\nX-Evil: 1"),
    ("to", ["carrier@example.test\r\nBcc: victim@example.test"]),
    ("in_reply_to", "<a@b>\r\nBcc: victim@example.test"),
    ("subject_tag", "[SHP-1]\n"),
    ("reply_to", "x@example.test\rBcc: y@example.test"),
])
def test_it_refuses_a_line_break_in_any_header_value_before_queueing(
    send_settings: Any, bob: Staff, field: str, value: Any
) -> None:
    mailbox = make_mailbox(bob, new_address())
    with pytest.raises(ValueError, match="line break"):
        _queue(mailbox, **{field: value})
    assert not OutboundMessage.objects.for_tenant(bob.tenant).exists()


def test_it_encodes_non_ascii_names_subjects_bodies_and_file_names_for_the_wire(send_settings: Any, bob: Staff) -> None:
    mailbox = make_mailbox(bob, new_address(), display_name="Zoë Ångström, Dispatch")
    subject = "Über die Lieferung — 運送 " + "lange Betreffzeile " * 8
    body = "Grüße,\nFrom the dock: 8 pallets.\n.\n"
    report = bytes(range(256)) * 4
    outbound = _queue(
        mailbox, to=["José Müller <jose@example.test>", '"Smith, John" <john@example.test>'], subject=subject,
        body_text=body, body_html="<p>Grüße</p>",
        attachments=[sending.Attachment("Lieferschein Übersicht.pdf", report, "application/pdf"),
                     sending.Attachment("rates.csv", b"lane,rate\n", "text/csv")],
        in_reply_to="<parent@carrier.test>",
    )

    raw = bytes(outbound.raw or b"")
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # RFC 2047: non-ASCII header text travels as encoded words
    assert b"\n" not in raw.replace(b"\r\n", b"") and max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = _parsed(raw)
    assert msg["Subject"] == subject and msg["Subject"] == outbound.subject
    assert msg["From"].addresses[0].display_name == "Zoë Ångström, Dispatch"
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("José Müller", "jose@example.test"), ("Smith, John", "john@example.test")]
    assert msg["In-Reply-To"] == "<parent@carrier.test>" and msg["Message-ID"] == outbound.message_id
    assert msg.get_content_type() == "multipart/mixed"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n") == body  # no ">From" mangling
    assert html is not None and html.get_content().replace("\r\n", "\n") == "<p>Grüße</p>\n"
    attachments = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True)) for a in msg.iter_attachments()]
    assert attachments == [("Lieferschein Übersicht.pdf", "application/pdf", report),
                           ("rates.csv", "text/csv", b"lane,rate\n")]
    assert not [d for part in msg.walk() for d in part.defects]


# ----------------------------------------------------------------------------- policy


def test_it_refuses_recipients_matching_the_exclude_pattern_naming_the_address(send_settings: Any, bob: Staff) -> None:
    mailbox = make_mailbox(bob, new_address(), recipient_exclude_regex=r"@competitor\.test$")
    with pytest.raises(sending.SendRefused, match=r"spy@competitor\.test is excluded"):
        _queue(mailbox, to=["carrier@example.test"], cc=["spy@competitor.test"])
    assert _queue(mailbox, to=["carrier@example.test"]).status == Status.QUEUED


def test_it_validates_the_exclude_pattern_on_save(bob: Staff) -> None:
    from django.core.exceptions import ValidationError

    mailbox = make_mailbox(bob, new_address())
    for bad in ["([a-z]", "(a+)+$", "(x|xy)*z", r"(.)\1"]:
        mailbox.recipient_exclude_regex = bad
        with pytest.raises(ValidationError):
            mailbox.full_clean()
    mailbox.recipient_exclude_regex = r"@(gmail|yahoo)\.com$"
    mailbox.full_clean()


def test_it_sends_only_to_known_contacts_when_the_mailbox_says_so(send_settings: Any, bob: Staff, alice: Staff) -> None:
    mailbox = make_mailbox(bob, new_address(), allowed_recipients=Mailbox.AllowedRecipients.CONTACTS)
    with pytest.raises(sending.SendRefused, match=r"stranger@example\.test is not a contact"):
        _queue(mailbox, to=["stranger@example.test"])

    InboundMessage.objects.for_tenant(bob.tenant).create(
        mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=1, message_id="<m1@x>", size=10,
        from_address="Dispatch <Stranger@Example.test>",
    )
    assert _queue(mailbox, to=["stranger@example.test"]).status == Status.QUEUED
    assert _queue(mailbox, to=[alice.email]).status == Status.QUEUED  # colleagues are known
    with pytest.raises(sending.SendRefused):
        _queue(mailbox, to=["er@example.test"])  # a substring of a known address is not known


def test_it_uses_a_pluggable_known_contact_checker(send_settings: Any, bob: Staff) -> None:
    send_settings.MAILBOX_KNOWN_CONTACT_CHECKER = "tests.mailboxes.test_send_service.only_vip"
    mailbox = make_mailbox(bob, new_address(), allowed_recipients=Mailbox.AllowedRecipients.CONTACTS)
    assert _queue(mailbox, to=["vip@example.test"]).status == Status.QUEUED
    with pytest.raises(sending.SendRefused):
        _queue(mailbox, to=["other@example.test"])


def only_vip(*, tenant: Any, address: str) -> bool:
    return address == "vip@example.test"


def test_it_caps_message_size_and_recipients_per_provider(send_settings: Any, bob: Staff) -> None:
    google = make_mailbox(bob, new_address(), provider="google")
    with pytest.raises(sending.SendRefused, match="at most 100 recipients"):
        _queue(google, to=[f"r{i}@example.test" for i in range(101)])
    send_settings.MAILBOX_SMTP_MAX_MESSAGE_BYTES = 50_000
    imap = make_mailbox(bob, new_address())
    big = sending.Attachment("manifest.pdf", b"\0" * 60_000, "application/pdf")
    with pytest.raises(sending.SendRefused, match="MB"):
        _queue(imap, attachments=[big])


def test_an_outsider_cannot_send_through_another_companys_mailbox(
    send_settings: Any, bob: Staff, charlie: Staff
) -> None:
    mailbox = make_mailbox(bob, new_address())
    with pytest.raises(sending.SendRefused, match="another company"):
        sending.message_queue(tenant=charlie.tenant, staff=charlie, mailbox=mailbox, to=["x@example.test"],
                              subject="s", body_text="b")
    with pytest.raises(sending.SendRefused, match="not Charlie"):
        sending.message_queue(tenant=bob.tenant, staff=charlie, mailbox=mailbox, to=["x@example.test"],
                              subject="s", body_text="b")
    assert not OutboundMessage.unscoped.exists()


# ----------------------------------------------------------------------------- failures, retries, once-only


def test_it_retries_a_4xx_with_backoff_and_then_sends(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    clock = FakeClock()
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    outbound = _queue(mailbox)
    smtp_server.fail_next("DATA", 451, "4.3.0 try again later", server="submission")

    first = sending.message_deliver(outbound_id=outbound.pk, clock=clock)
    assert first.status == Status.QUEUED and first.retry_in == 60 and "451" in first.error
    assert sending.message_deliver(outbound_id=outbound.pk, clock=clock).status == Status.QUEUED  # not yet due

    clock.advance(61)
    assert sending.message_deliver(outbound_id=outbound.pk, clock=clock).status == Status.SENT
    outbound.refresh_from_db()
    assert outbound.attempts == 2
    assert [m for m in smtp_server.messages if m.message_id == outbound.message_id]


def test_it_fails_a_5xx_keeping_the_servers_words_and_the_message(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    outbound = _queue(mailbox)
    smtp_server.fail_next("MAIL", 550, "5.7.1 sender not allowed by policy", server="submission")

    result = sending.message_deliver(outbound_id=outbound.pk)

    assert result.status == Status.FAILED
    outbound.refresh_from_db()
    assert outbound.status == Status.FAILED and "5.7.1 sender not allowed by policy" in outbound.last_error
    assert bytes(outbound.raw or b"") and outbound.message_id in bytes(outbound.raw or b"").decode()
    assert sent_folder_message_ids(dovecot, mailbox.email_address) == []


def test_it_gives_up_after_the_maximum_attempts(send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any) -> None:
    clock = FakeClock()
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    outbound = _queue(mailbox)
    smtp_server.fail_next("RCPT", 452, "4.5.3 too many recipients", count=3, server="submission")
    for _ in range(3):
        result = sending.message_deliver(outbound_id=outbound.pk, clock=clock)
        clock.advance(3600)
    assert result.status == Status.FAILED and "4.5.3" in result.error


def test_a_task_executed_twice_sends_once(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    send_settings.CELERY_TASK_ALWAYS_EAGER = True
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        outbound = sending.message_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, to=["c@example.test"],
                                         subject="Once", body_text="only once")
    assert len(callbacks) == 1
    outbound_deliver(outbound.pk)
    outbound_deliver(outbound.pk)  # a redelivered broker message

    assert len([m for m in smtp_server.messages if m.message_id == outbound.message_id]) == 1
    assert sent_folder_message_ids(dovecot, mailbox.email_address) == [outbound.message_id]


def test_it_sends_a_batch_over_one_connection(send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    ids = [_queue(mailbox, subject=f"Batch {i}").message_id for i in range(3)]

    results = sending.mailbox_deliver_queued(mailbox_id=mailbox.pk)

    assert [r.status for r in results.values()] == [Status.SENT] * 3
    assert sorted(sent_folder_message_ids(dovecot, mailbox.email_address)) == sorted(ids)


def test_it_recovers_a_message_stuck_in_sending_by_looking_in_the_sent_folder_first(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    already_sent, never_sent = _queue(mailbox, subject="A"), _queue(mailbox, subject="B")
    dovecot.append(mailbox.email_address, bytes(already_sent.raw or b""), folder="Sent", flags="\\Seen",
                   password="sender-pass")
    long_ago = timezone.now() - timedelta(hours=1)
    OutboundMessage.unscoped.filter(pk__in=[already_sent.pk, never_sent.pk]).update(
        status=Status.SENDING, claimed_at=long_ago, attempts=1
    )

    counts = sending.outbound_recover_stale()

    assert counts == {"found_sent": 1, "requeued": 1, "unknown": 0}
    already_sent.refresh_from_db()
    never_sent.refresh_from_db()
    assert already_sent.status == Status.SENT and never_sent.status == Status.QUEUED
    assert never_sent.pk in sending.outbound_due_ids()



def test_it_signals_after_a_send(send_settings: Any, bob: Staff, smtp_server: Any) -> None:
    send_settings.RELAY_SMTP_URL = f"smtp://127.0.0.1:{smtp_server.sink_port}"
    seen: list[OutboundMessage] = []

    def receiver(sender: Any, outbound: OutboundMessage, **kwargs: Any) -> None:
        seen.append(outbound)

    message_sent.connect(receiver)
    try:
        outbound = sending.message_queue(tenant=bob.tenant, staff=bob, to=["c@example.test"], subject="s",
                                         body_text="b", enqueue=False)
        sending.message_deliver(outbound_id=outbound.pk)
    finally:
        message_sent.disconnect(receiver)
    assert [o.pk for o in seen] == [outbound.pk] and seen[0].status == Status.SENT


def test_the_send_test_button_uses_the_service(send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any) -> None:
    from mailboxes import services

    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    text = services.mailbox_send_test(mailbox=mailbox, actor=bob)
    assert "sent" in text
    got = smtp_server.wait_for(lambda m: m.rcpt_tos == ("bob@acme.test",))
    assert got.message_id in sent_folder_message_ids(dovecot, mailbox.email_address)


# ----------------------------------------------------------------------------- batches


def _batch(count: int, **kwargs: Any) -> list[sending.Outgoing]:
    return [sending.Outgoing(to=[f"carrier{i}@example.test"], subject=f"Load {i}", body_text=f"Message {i}\n", **kwargs)
            for i in range(count)]


def test_it_queues_a_batch_with_one_insert_and_delivers_it_with_as_many_queries_for_30_as_for_3(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    counts = []
    message_ids: list[str] = []
    for size in (1, 3, 30):  # the first, to compare the two others in the steady state
        with CaptureQueriesContext(connection) as queued:
            rows = sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(size),
                                          enqueue=False)
        assert [q["sql"].split()[0] for q in queued.captured_queries] == ["INSERT"]
        with CaptureQueriesContext(connection) as delivered:
            results = sending.mailbox_deliver_queued(mailbox_id=mailbox.pk)
        assert [r.status for r in results.values()] == [Status.SENT] * size
        counts.append(len(delivered.captured_queries))
        message_ids += [row.message_id for row in rows]

    assert counts[1] == counts[2]
    assert not OutboundMessage.unscoped.filter(mailbox=mailbox).exclude(status=Status.SENT).exists()
    assert not OutboundMessage.unscoped.filter(mailbox=mailbox, sent_copy_pending=True).exists()
    assert sorted(sent_folder_message_ids(dovecot, mailbox.email_address)) == sorted(message_ids)
    assert sorted(m.message_id for m in smtp_server.messages if m.message_id in message_ids) == sorted(message_ids)


def test_a_batch_is_all_or_nothing_and_says_which_message_was_refused(send_settings: Any, bob: Staff) -> None:
    mailbox = make_mailbox(bob, new_address(), recipient_exclude_regex=r"@competitor\.test$")
    messages = _batch(3)
    with pytest.raises(sending.SendRefused, match=r"message 2 of 3: Subject contains a line break"):
        sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, enqueue=False,
                               messages=[messages[0], sending.Outgoing(to=["a@example.test"], subject="x\nBcc: y",
                                                                       body_text="b"), messages[2]])
    with pytest.raises(sending.SendRefused, match=r"spy@competitor\.test is excluded"):
        sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, enqueue=False,
                               messages=[*messages, sending.Outgoing(to=["spy@competitor.test"], subject="s",
                                                                     body_text="b")])
    assert not OutboundMessage.objects.for_tenant(bob.tenant).exists()


def test_a_queued_batch_is_one_delivery_task_over_one_connection(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any, django_capture_on_commit_callbacks: Any
) -> None:
    send_settings.CELERY_TASK_ALWAYS_EAGER = True
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        rows = sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(4))
    assert len(callbacks) == 1
    assert {r.status for r in OutboundMessage.unscoped.filter(pk__in=[r.pk for r in rows])} == {Status.SENT}
    assert len([m for m in smtp_server.messages if m.auth_user == mailbox.email_address]) == 4


def test_a_claim_takes_each_due_row_once(send_settings: Any, bob: Staff) -> None:
    clock = FakeClock()
    mailbox = make_mailbox(bob, new_address())
    rows = sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(4), enqueue=False)
    later = sending._now(clock) + timedelta(minutes=5)
    OutboundMessage.unscoped.filter(pk=rows[3].pk).update(next_attempt_at=later)
    ids = [r.pk for r in rows]

    assert sending._claim(ids, clock) == ids[:3]
    assert sending._claim(ids, clock) == []  # a second worker, or the same task run twice
    assert sorted(OutboundMessage.unscoped.filter(pk__in=ids).values_list("status", "attempts")) == [
        (Status.QUEUED, 0), (Status.SENDING, 1), (Status.SENDING, 1), (Status.SENDING, 1)]


def test_the_batch_task_comes_back_for_throttled_messages(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailboxes.tasks import send as send_tasks

    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server,
                           send_per_minute=2)
    rows = sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(4), enqueue=False)
    scheduled: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(send_tasks.mailbox_deliver_queued, "apply_async",
                        lambda args, **kwargs: scheduled.append((args, kwargs)))

    assert send_tasks.mailbox_deliver_queued(mailbox.pk) == 4

    statuses = dict(OutboundMessage.unscoped.filter(pk__in=[r.pk for r in rows]).values_list("pk", "status"))
    assert sorted(statuses.values()) == [Status.QUEUED, Status.QUEUED, Status.SENT, Status.SENT]
    assert len(scheduled) == 1 and scheduled[0][0] == (mailbox.pk,) and 1 <= scheduled[0][1]["countdown"] <= 61


def test_the_batch_task_starts_no_pass_past_its_budget_and_queues_itself_for_the_rest(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pass cut by the soft time limit would leave messages submitted but still SENDING, which
    # the stale recovery sends again unless it finds their Sent copy: no pass may start late.
    from mailboxes.tasks import send as send_tasks

    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    rows = sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(5), enqueue=False)
    monkeypatch.setattr(sending, "mailbox_deliver_queued",
                        functools.partial(sending.mailbox_deliver_queued, limit=2))  # 2 a pass
    monkeypatch.setattr(send_tasks, "PASS_BUDGET", 0)
    queued: list[Any] = []
    monkeypatch.setattr(send_tasks.mailbox_deliver_queued, "delay", lambda *args: queued.append(args))

    assert send_tasks.mailbox_deliver_queued(mailbox.pk) == 2  # one pass, then over the budget

    statuses = list(OutboundMessage.unscoped.filter(pk__in=[r.pk for r in rows]).order_by("id")
                    .values_list("status", flat=True))
    assert statuses == [Status.SENT, Status.SENT, Status.QUEUED, Status.QUEUED, Status.QUEUED]
    assert queued == [(mailbox.pk,)]
    assert send_tasks.mailbox_deliver_queued(mailbox.pk) == 2 and len(queued) == 2
    assert send_tasks.mailbox_deliver_queued(mailbox.pk) == 1 and len(queued) == 3
    assert send_tasks.mailbox_deliver_queued(mailbox.pk) == 0 and len(queued) == 3  # nothing left, no task
    assert set(OutboundMessage.unscoped.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True)) == {
        Status.SENT}


def _wait_for_a_blocked_query() -> None:
    """Until a session waits on a row lock (pg_locks), polled: no timing assumption."""
    from django.db import connection

    for _ in range(500):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
        threading.Event().wait(0.01)
    raise AssertionError("the second claimer never waited on the first one's rows")


@pytest.mark.django_db(transaction=True)
def test_two_claimers_of_overlapping_batches_on_postgresql_each_take_a_row_once(
    send_settings: Any, bob: Staff
) -> None:
    # The first holds its claim open; the second waits on the shared rows, then finds them SENDING.
    from django.db import connection, transaction

    assert connection.vendor == "postgresql"
    clock = FakeClock()
    mailbox = make_mailbox(bob, new_address())
    ids = [r.pk for r in sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(6),
                                                enqueue=False)]
    claimed: dict[str, list[int]] = {}
    first_holds, release_first = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                claimed["first"] = sending._claim(ids[:4], clock)
                first_holds.set()
                release_first.wait(30)
        finally:
            connection.close()

    def second() -> None:
        try:
            claimed["second"] = sending._claim(list(reversed(ids[2:])), clock)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_holds.wait(30)
    threads[1].start()
    _wait_for_a_blocked_query()
    release_first.set()
    for thread in threads:
        thread.join(30)

    assert claimed == {"first": ids[:4], "second": ids[4:]}
    assert set(OutboundMessage.unscoped.filter(pk__in=ids).values_list("status", "attempts")) == {(Status.SENDING, 1)}


def test_sent_copies_of_a_batch_go_in_multiappends_of_bounded_size(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One MULTIAPPEND per send chunk would be one IMAP command of up to 100 messages with their
    # attachments: the copies are split as sent_copies_file splits them (about 8 MB, here 700 bytes).
    from imapclient import IMAPClient

    limit = 700
    monkeypatch.setattr(sending, "_append_chunks", functools.partial(sending._append_chunks, size=limit))
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    rows = sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(6), enqueue=False)
    sizes = sorted(len(bytes(r.raw or b"")) for r in rows)
    assert sum(sizes) > 2 * limit and max(sizes) < limit
    commands: list[list[int]] = []
    original = IMAPClient.multiappend

    def recording(self: Any, folder: str, msgs: list[dict[str, Any]]) -> Any:
        commands.append([len(m["msg"]) for m in msgs])
        return original(self, folder, msgs)

    monkeypatch.setattr(IMAPClient, "multiappend", recording)

    results = sending.mailbox_deliver_queued(mailbox_id=mailbox.pk)

    assert [r.status for r in results.values()] == [Status.SENT] * 6
    assert sorted(n for command in commands for n in command) == sizes
    assert len(commands) >= 3 and all(sum(command) <= limit for command in commands)
    assert not OutboundMessage.unscoped.filter(pk__in=[r.pk for r in rows], sent_copy_pending=True).exists()
    assert sorted(sent_folder_message_ids(dovecot, mailbox.email_address)) == sorted(r.message_id for r in rows)


def test_the_sent_copy_thread_never_opens_a_database_connection(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django's connections are per thread: one opened there would live outside the caller's
    # transaction and never be closed. The thread only talks IMAP; the caller records the copies.
    from django.db import connections

    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    rows = sending.messages_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, messages=_batch(3), enqueue=False)
    opened: list[bool] = []
    original = sending._SentCopier._run

    def watched(self: Any) -> None:
        original(self)
        opened.append(connections["default"].connection is not None)

    monkeypatch.setattr(sending._SentCopier, "_run", watched)

    sending.mailbox_deliver_queued(mailbox_id=mailbox.pk)

    assert opened == [False]
    assert not OutboundMessage.unscoped.filter(pk__in=[r.pk for r in rows], sent_copy_pending=True).exists()


def test_a_message_that_cannot_go_on_the_wire_fails_alone_and_the_batch_is_recorded(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    # A row queued before recipient domains were converted (or any envelope SMTP cannot carry):
    # aiosmtplib raised UnicodeEncodeError out of the delivery, leaving the whole chunk SENDING,
    # the messages already accepted by the server included (sent again by the stale recovery).
    clock = FakeClock()
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    before, bad, after = (_queue(mailbox, subject=f"Load {n}") for n in range(3))
    OutboundMessage.unscoped.filter(pk=bad.pk).update(recipients=["jorg@bücher.example"])

    results = sending.mailbox_deliver_queued(mailbox_id=mailbox.pk, clock=clock)

    assert [results[r.pk].status for r in (before, bad, after)] == [Status.SENT, Status.FAILED, Status.QUEUED]
    assert "UnicodeEncodeError" in results[bad.pk].error
    clock.advance(2)
    assert sending.mailbox_deliver_queued(mailbox_id=mailbox.pk, clock=clock)[after.pk].status == Status.SENT
    received = [m.message_id for m in smtp_server.messages]
    assert received.count(before.message_id) == 1 and received.count(after.message_id) == 1
    assert bad.message_id not in received
    assert OutboundMessage.unscoped.get(pk=after.pk).attempts == 1  # the untried one cost no attempt
