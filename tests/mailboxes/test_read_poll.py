"""Reading a mailbox against a real Dovecot: window, cursor, once-only storage, UIDVALIDITY."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mailboxes.models import FolderCursor, InboundMessage, Mailbox
from mailboxes.reading import mailbox_poll, normalise_message_id
from tests.mailboxes.reading_support import (  # noqa: F401 - fixtures
    append,
    folder_state,
    handler_log,
    make_reader,
    message,
    reading_settings,
    stored,
)
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings", "handler_log")]


def test_it_takes_only_the_last_seven_days_on_the_first_poll(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("quote recent"), age=timedelta(days=1))
    append(dovecot, mailbox.email_address, message("other too old"), age=timedelta(days=10))
    append(dovecot, mailbox.email_address, message("pickup today"))

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert result.error == ""
    assert (result.fetched, result.new, result.duplicates) == (2, 2, 0)
    assert (result.quote, result.pickup, result.other) == (1, 1, 0)
    assert sorted(m.subject for m in stored(mailbox)) == ["pickup today", "quote recent"]
    # The old message has the highest UID but stays behind the cursor for good.
    assert mailbox_poll(mailbox_id=mailbox.pk).fetched == 0
    mailbox.refresh_from_db()
    assert mailbox.last_read_at is not None and mailbox.consecutive_failures == 0
    assert mailbox.next_poll_at is not None


def test_it_fetches_nothing_on_a_second_poll_and_a_new_message_once(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("operations first"))
    assert mailbox_poll(mailbox_id=mailbox.pk).new == 1
    first_read = Mailbox.unscoped.get(pk=mailbox.pk).last_read_at

    again = mailbox_poll(mailbox_id=mailbox.pk)
    assert (again.fetched, again.new) == (0, 0)

    uid = append(dovecot, mailbox.email_address, message("quote second"))
    third = mailbox_poll(mailbox_id=mailbox.pk)
    assert (third.fetched, third.new, third.quote) == (1, 1, 1)
    assert mailbox_poll(mailbox_id=mailbox.pk).fetched == 0

    rows = stored(mailbox)
    assert [m.subject for m in rows] == ["operations first", "quote second"]
    assert rows[1].uid == uid and rows[1].status == InboundMessage.Status.PROCESSED
    assert rows[1].raw is not None and b"quote second" in bytes(rows[1].raw)
    assert rows[1].size == len(bytes(rows[1].raw)) and "Subject: quote second" in rows[1].headers
    assert rows[1].from_address == "customer@shipper.test"
    cursor = FolderCursor.objects.get(mailbox=mailbox, folder="INBOX")
    assert cursor.last_uid == uid and cursor.uidvalidity == rows[1].uidvalidity
    assert Mailbox.unscoped.get(pk=mailbox.pk).last_read_at > first_read


def test_it_reads_with_peek_and_leaves_seen_to_the_user(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("quote unread"))
    # Already read by the user in their mail client: still new to us (cursor, not \Seen).
    append(dovecot, mailbox.email_address, message("pickup read"), flags=(b"\\Seen",))

    assert mailbox_poll(mailbox_id=mailbox.pk).new == 2

    flags = {v["subject"]: v["flags"] for v in folder_state(dovecot, mailbox.email_address).values()}
    assert b"\\Seen" not in flags["quote unread"]
    assert b"\\Seen" in flags["pickup read"]


def test_it_stores_a_message_once_when_it_comes_back_under_a_new_uid(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    raw = message("quote reuploaded")
    append(dovecot, mailbox.email_address, raw)
    assert mailbox_poll(mailbox_id=mailbox.pk).new == 1

    append(dovecot, mailbox.email_address, raw)  # Outlook-style re-upload: same Message-ID, new UID
    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.fetched, result.new, result.duplicates) == (1, 0, 1)
    assert len(stored(mailbox)) == 1


def test_it_stores_the_first_of_two_copies_in_one_fetch_batch(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    raw = message("quote copied twice")
    append(dovecot, mailbox.email_address, raw)
    append(dovecot, mailbox.email_address, raw)  # same Message-ID, next UID, same INSERT statement

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.fetched, result.new, result.duplicates) == (2, 1, 1)
    (row,) = stored(mailbox)
    assert row.uid == 1  # the first UID of the new folder: the earlier copy wins, as one INSERT a row did


def test_it_synthesises_a_message_id_when_there_is_none(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    raw = message("other without id", message_id="")
    append(dovecot, mailbox.email_address, raw)
    append(dovecot, mailbox.email_address, raw)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.new, result.duplicates) == (1, 1)
    (row,) = stored(mailbox)
    assert row.message_id.endswith("@synthesised>") and len(row.message_id) == 64 + len("<@synthesised>")


def test_it_resynchronises_by_message_id_when_uidvalidity_changes(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    for subject in ("quote one", "pickup two", "other three"):
        append(dovecot, mailbox.email_address, message(subject))
    assert mailbox_poll(mailbox_id=mailbox.pk).new == 3
    old_validity = FolderCursor.objects.get(mailbox=mailbox).uidvalidity

    # Recreate the folder with the same messages: Dovecot renumbers a Maildir whose UID list and
    # indexes are gone, under a new UIDVALIDITY (a timestamp, hence the pause).
    time.sleep(1.1)
    maildir = Path(dovecot.maildir(mailbox.email_address))
    for name in os.listdir(maildir):
        if name.startswith("dovecot"):
            (maildir / name).unlink()
    append(dovecot, mailbox.email_address, message("operations four"))

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert result.error == ""
    assert (result.fetched, result.new, result.duplicates, result.operations) == (4, 1, 3, 1)
    rows = stored(mailbox)
    assert len(rows) == 4
    cursor = FolderCursor.objects.get(mailbox=mailbox)
    assert cursor.uidvalidity != old_validity
    # The known messages now point at their new UIDs.
    assert {r.uidvalidity for r in rows} == {cursor.uidvalidity}
    server = {v["subject"]: uid for uid, v in folder_state(dovecot, mailbox.email_address).items()}
    assert {r.subject: r.uid for r in rows} == server
    assert mailbox_poll(mailbox_id=mailbox.pk).fetched == 0


def test_it_stores_headers_only_for_a_message_over_the_size_limit(bob: Staff, dovecot: Any, settings: Any) -> None:
    settings.MAILBOX_MAX_MESSAGE_BYTES = 4096
    mailbox = make_reader(bob, dovecot, post_processing=Mailbox.PostProcessing.ARCHIVE)
    append(dovecot, mailbox.email_address, message("quote huge", body="x" * 20000 + "\n"))
    append(dovecot, mailbox.email_address, message("quote small"))

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.fetched, result.new, result.quote, result.post_processed) == (2, 2, 1, 1)
    big = InboundMessage.unscoped.get(mailbox=mailbox, subject="quote huge")
    assert big.status == InboundMessage.Status.TOO_LARGE and big.raw is None
    assert big.size > 20000 and "Subject: quote huge" in big.headers and big.message_id.startswith("<")
    # Not processed, so left where it is on the server.
    assert [v["subject"] for v in folder_state(dovecot, mailbox.email_address).values()] == ["quote huge"]
    assert mailbox_poll(mailbox_id=mailbox.pk).fetched == 0


def test_it_normalises_message_ids() -> None:
    assert normalise_message_id(" <abc@x.test>\r\n (comment)") == "<abc@x.test>"
    assert normalise_message_id("abc@x.test") == "<abc@x.test>"
    assert normalise_message_id("") == ""


def test_it_records_a_connection_failure_with_backoff_and_keeps_others_going(
    bob: Staff, dovecot: Any, settings: Any
) -> None:
    settings.MAILBOX_POLL_INTERVAL = 60
    broken = make_reader(bob, dovecot, imap_port=1)  # nothing listens there
    healthy = make_reader(bob, dovecot)
    append(dovecot, healthy.email_address, message("quote fine"))

    first = mailbox_poll(mailbox_id=broken.pk)
    assert first.error and first.new == 0
    broken.refresh_from_db()
    assert broken.consecutive_failures == 1 and broken.last_error
    assert broken.next_poll_at is not None and broken.last_error_at is not None
    assert broken.status == Mailbox.Status.ACTIVE
    delay = (broken.next_poll_at - broken.last_error_at).total_seconds()
    assert 59 <= delay <= 61

    mailbox_poll(mailbox_id=broken.pk)
    broken.refresh_from_db()
    assert broken.consecutive_failures == 2
    assert broken.next_poll_at is not None and broken.last_error_at is not None
    assert 119 <= (broken.next_poll_at - broken.last_error_at).total_seconds() <= 121

    assert mailbox_poll(mailbox_id=healthy.pk).new == 1


# ----------------------------------------------------------------------------- header fields

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "messages"

# Headers the fast path must leave to the parser, or read as the parser does.
NASTY_HEADERS = [
    b"",
    b"\r\n",
    b"Subject: hi\r\n",
    b"Subject: hi",
    b"Subject: no blank line at the end\r\nFrom: a@b.test",
    b"From: A <a@b.test>\r\nFrom: Second <second@b.test>\r\nSubject: one\r\nSubject: two\r\n\r\n",
    b"FROM: Upper <UPPER@B.TEST>\r\nsubject: lower\r\nmessage-id: <Lower@x>\r\nDATE: Tue, 15 Dec 2026 08:00:00 -0500\r\n\r\n",
    b"Subject: folded\r\n  over\r\n\ttwo lines\r\nFrom: \"Doe, John\"\r\n <john@b.test>\r\n\r\n",
    b"Subject:   \r\n  only a continuation\r\nFrom:\r\n\r\n",
    b"Subject: =?utf-8?q?Caf=C3=A9?= and =?iso-8859-1?b?5OTk?=\r\n\r\n",
    b"Subject: =?utf-8?q?broken\r\nFrom: =?utf-8?b?Sm9obg==?= <j@b.test>\r\n\r\n",
    b"From: =?utf-8?q?a=3Cb=40c.test=3E?= <x@y.test>\r\n\r\n",  # decodes into an address
    b"Subject: caf\xc3\xa9 in raw UTF-8\r\nFrom: J\xc3\xb6rg <j@b.test>\r\n\r\n",
    b"Subject: latin-1 \xe9\r\nFrom: \xff <a@b.test>\r\n\r\n",
    b"Subject: a NUL \x00 inside\r\nFrom: a\x00b@c.test\r\nMessage-ID: <a\x00b@c>\r\n\r\n",
    b"From nobody Tue Dec 15 08:00:00 2026\r\nSubject: mbox line first\r\n\r\n",
    b" Subject: first line folded\r\nFrom: a@b.test\r\n\r\n",
    b": no name\r\nFrom: a@b.test\r\n\r\n",
    b"Subject: before a broken line\r\nthis is no header\r\nFrom: after@b.test\r\n\r\n",
    b"Subject : space before the colon\r\nFrom: a@b.test\r\n\r\n",
    b"Subject: bare\rCR\r\nFrom: a@b.test\r\n\r\n",
    b"Subject: LF only\nFrom: A <a@b.test>\nDate: Tue, 15 Dec 2026 08:00:00 +0000\n\n",
    b"Subject: mixed\r\nFrom: a@b.test\n\r\nFrom: body@b.test\r\n",
    b"Subject: vertical\x0btab\x0cand\x1cseparators\r\nFrom: a@b.test\r\n\r\n",
    b"Subject: header\r\n\r\nFrom: in-the-body@b.test\r\n",
    b"From: a@b.test (John Doe)\r\n\r\n",
    b"From: John Doe <a@b.test>, Jane <c@d.test>\r\n\r\n",
    b"From: John, Doe <a@b.test>\r\n\r\n",
    b"From: \"quoted \\\" escape\" <a@b.test>\r\n\r\n",
    b"From: < a @ b.test >\r\n\r\n",
    b"From: a..b@c.test\r\n\r\n",
    b"From: a@b.test.\r\n\r\n",
    b"From: a@b@c.test\r\n\r\n",
    b"From: <a@[127.0.0.1]>\r\n\r\n",
    b"From: \"a@b.test\" <c@d.test>\r\n\r\n",
    b"From: J. R. Doe <J.R.Doe@B.Test>\r\n\r\n",
    b"From: group: a@b.test, c@d.test;\r\n\r\n",
    b"From: undisclosed\r\n\r\n",
    b"From: <>\r\n\r\n",
    b"From: Name <a@b.test> trailing\r\n\r\n",
    b"Date: Tue, 15 Dec 2026 08:00 -0000\r\n\r\n",
    b"Date: 15 Dec 2026 08:00:00 +0530 (IST)\r\n\r\n",
    b"Date: Tue, 15 Dec 2026 08:00:00 GMT\r\n\r\n",
    b"Date: Tue, 31 Feb 2026 08:00:00 +0000\r\n\r\n",
    b"Date: Tue, 15 Dec 2026 24:00:00 +0000\r\n\r\n",
    b"Date: Tue, 15 Dec 2026 08:00:60 +0000\r\n\r\n",
    b"Date: Tue, 15 Dec 2026 08:00:00 +2400\r\n\r\n",
    b"Date: Tue, 15 Dec 2026 08:00:00 -0060\r\n\r\n",
    b"Date: Tue, 15 Dec 0099 08:00:00 +0000\r\n\r\n",
    b"Date: Tue, 15 Dec 202666666 08:00:00 +0000\r\n\r\n",
    b"Date: Tue, 15 dec 26 08:00:00 +0000\r\n\r\n",
    b"Date: Tue,15 Dec 2026 08:00:00 +0000\r\n\r\n",
    b"Date: Tue, 15  Dec 2026 08:00:00 +0000\r\n\r\n",
    b"Date: Tue, 15 Dec 2026\r\n 08:00:00 +0000\r\n\r\n",
    b"Date: 2026-12-15T08:00:00Z\r\n\r\n",
    b"Date: yesterday\r\n\r\n",
    b"Message-ID:\r\n <folded@x.test>\r\n\r\n",
    b"Message-ID: no-brackets@x.test\r\nMessage-ID: <second@x.test>\r\n\r\n",
    b"Message-ID: <a@x.test> <b@x.test>\r\n\r\n",
]


def _header_variants() -> list[bytes]:
    """The corpus's header blocks (with and without the blank line, LF-only) and NASTY_HEADERS,
    plus each of them damaged a few ways (seeded: the same cases every run)."""
    import random

    blocks = []
    for path in sorted(CORPUS.glob("*.eml")):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        blocks += [head + b"\r\n\r\n", head, head.replace(b"\r\n", b"\n") + b"\n\n"]
    cases = blocks + NASTY_HEADERS
    rng = random.Random(11)
    damage = [b"\x00", b"\xe9", b"\r", b"\n", b"\r\n ", b" ", b":", b"=?", b"<", b">", b"@", b",", b"(", b"\""]
    for case in list(cases):
        for _ in range(3):
            at = rng.randrange(len(case) + 1)
            cases.append(case[:at] + rng.choice(damage) + case[at:])
    return cases


def test_it_reads_the_header_fields_as_the_email_parser_does() -> None:
    from mailboxes.reading import _simple_headers, header_fields, header_fields_parsed

    cases = _header_variants()
    fast = 0
    for head in cases:
        got, parsed = header_fields(head), header_fields_parsed(head)
        assert got == parsed, head
        assert (got[3] and got[3].utcoffset()) == (parsed[3] and parsed[3].utcoffset()), head
        fast += _simple_headers(head) is not None
    # The corpus is read without the parser: the fast path is taken, not only agreed with.
    assert fast >= len(list(CORPUS.glob("*.eml"))) * 3


# ----------------------------------------------------------------------------- the rows stored


def test_it_stores_the_columns_the_orm_would_write(bob: Staff) -> None:
    from datetime import UTC, datetime

    from django.db import connection, transaction

    from mailboxes.reading import _insert_new, _NewRow
    from tests.factories import make_mailbox

    mailbox = make_mailbox(bob, "rows@example.test")
    sent = datetime(2026, 12, 15, 13, 0, tzinfo=UTC)
    shapes: list[dict[str, Any]] = [
        {"uid": 7, "message_id": "<one@x.test>", "raw": b"Subject: caf\xc3\xa9\r\n\r\n\x00\xff body", "size": 25,
         "headers": "Subject: café\r\n\r\n", "subject": "café", "from_address": "a@b.test", "sent_date": sent,
         "internal_date": datetime(2026, 12, 15, 14, 0, tzinfo=UTC), "status": InboundMessage.Status.RECEIVED,
         "error": ""},
        {"uid": 8, "message_id": "<two@x.test>", "raw": None, "size": 99_000_000, "headers": "", "subject": "",
         "from_address": "", "sent_date": None, "internal_date": None, "status": InboundMessage.Status.TOO_LARGE,
         "error": "over the size limit: headers only"},
    ]

    def columns(pk: int) -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {InboundMessage._meta.db_table} WHERE id = %s", [pk])
            row = cursor.fetchone()
            return {col.name: (bytes(value) if isinstance(value, memoryview) else value)
                    for col, value in zip(cursor.description, row, strict=True)}

    for shape in shapes:
        before = datetime.now(UTC)
        by_orm = InboundMessage.objects.for_tenant(bob.tenant).create(
            mailbox=mailbox, folder="INBOX", uidvalidity=5, **shape)
        orm = columns(by_orm.pk)
        by_orm.delete()
        with transaction.atomic():
            [(pk, uid, status)] = _insert_new([_NewRow(**shape)], tenant_id=bob.tenant_id, mailbox_id=mailbox.pk,
                                              folder="INBOX", uidvalidity=5)
        assert (uid, status) == (shape["uid"], shape["status"])
        ours = columns(pk)
        assert set(ours) == set(orm)
        for name in ("id", "public_id", "received_at"):
            assert type(ours.pop(name)) is type(orm.pop(name)), name
        assert ours == orm
        stored = InboundMessage.unscoped.get(pk=pk)
        assert stored.public_id != by_orm.public_id and before <= stored.received_at <= datetime.now(UTC)
        assert stored.result == {} and stored.attempts == 0
