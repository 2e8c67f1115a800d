"""Intake against a real Dovecot: handlers in one transaction, the action only after the commit,
repair after a crash, poison messages quarantined, noise never handed to the handlers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mailboxes import intake, reading
from mailboxes.intake import uid_ranges, uid_set_chunks
from mailboxes.models import InboundMessage, Mailbox, OutboundMessage
from mailboxes.reading import mailbox_poll
from tests.mailboxes.reading_support import (  # noqa: F401 - fixtures
    LOG,
    append,
    calls_in_this_process,
    folder_state,
    handler_log,
    imap,
    make_reader,
    message,
    reading_settings,
    stored,
    subjects,
)
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings", "handler_log")]


@pytest.mark.parametrize("action", ["archive", "mark_read", "delete", "nothing"])
def test_it_applies_the_post_processing_action_on_the_server(
    bob: Staff, dovecot: Any, action: str
) -> None:
    mailbox = make_reader(bob, dovecot, post_processing=action)
    address = mailbox.email_address
    append(dovecot, address, message("quote a"))
    append(dovecot, address, message("pickup b"))
    # The user's own trash-to-be, outside the window: a delete must not expunge it with ours.
    append(dovecot, address, message("other users deleted"), age=timedelta(days=30), flags=(b"\\Deleted",))

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert result.error == "" and result.new == 2
    assert result.post_processed == (0 if action == "nothing" else 2)
    assert all(m.post_processed_at is not None for m in stored(mailbox))
    inbox = {v["subject"]: v["flags"] for v in folder_state(dovecot, address).values()}
    ours = {"quote a", "pickup b"}
    if action == "archive":
        assert set(inbox) == {"other users deleted"}
        assert set(subjects(dovecot, address, "Archive")) == ours
    elif action == "mark_read":
        assert all(b"\\Seen" in inbox[s] for s in ours)
    elif action == "delete":
        assert set(inbox) == {"other users deleted"}
        assert subjects(dovecot, address, "Archive") == [] and subjects(dovecot, address, "Trash") == []
    else:
        assert all(b"\\Seen" not in inbox[s] for s in ours)
    assert mailbox_poll(mailbox_id=mailbox.pk).post_processed == 0


@pytest.mark.parametrize(("batch", "delay", "parts", "expected"), [
    (4, 3600, 10, ["1:4", "5:7"]),
    (4, 0, 10, ["1:2", "3:4", "5:6", "7"]),  # waited long enough: after each fetch batch
    # The folder's 7 messages in 2 parts: at least 3 a MOVE, more than MAILBOX_ACTION_BATCH.
    (2, 3600, 2, ["1:4", "5:7"]),
    (2, 3600, 7, ["1:2", "3:4", "5:6", "7"]),
])
def test_it_applies_the_action_to_several_fetch_batches_at_once(
    bob: Staff, dovecot: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, batch: int, delay: int, parts: int,
    expected: list[str],
) -> None:
    # Each MOVE/EXPUNGE costs the server work in proportion to the folder: one per fetch batch
    # made Dovecot 7x dearer on a 100,000-message import, and a fixed number of messages a MOVE
    # still cost more a message the bigger the folder (Maildir, 100,000 messages: 170 ms of its CPU
    # a command; bench/README.md).
    settings.MAILBOX_FETCH_BATCH, settings.MAILBOX_INTAKE_PROCESSES = 2, 0
    settings.MAILBOX_ACTION_BATCH, settings.MAILBOX_ACTION_DELAY = batch, delay
    monkeypatch.setattr(reading, "ACTION_FOLDER_PARTS", parts)
    mailbox = make_reader(bob, dovecot, post_processing="archive")
    uids = [append(dovecot, mailbox.email_address, message(f"quote {n}")) for n in range(7)]
    assert uids == list(range(1, 8))
    moves = calls_in_this_process(monkeypatch, intake, "_apply", lambda client, mailbox, **kw: kw["uid_set"])

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert result.error == "" and (result.new, result.post_processed) == (7, 7)
    assert moves == expected
    assert subjects(dovecot, mailbox.email_address) == []
    assert len(subjects(dovecot, mailbox.email_address, "Archive")) == 7
    assert all(m.post_processed_at is not None for m in stored(mailbox))


def test_a_big_pass_refreshes_the_statistics_of_what_its_intake_makes_grow(
    bob: Staff, dovecot: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new tenant's first import: until autovacuum's next ANALYZE its shipments look like a handful
    # of rows, and the matcher's lookup that starts with the tenant read all of them, every batch.
    settings.MAILBOX_FETCH_BATCH, settings.MAILBOX_INTAKE_PROCESSES = 2, 0
    settings.MAILBOX_INTAKE_HANDLERS = ["shipments.intake.handle", "documents.intake.handle"]
    monkeypatch.setattr(reading, "STATISTICS_FIRST", 2)
    mailbox = make_reader(bob, dovecot, post_processing="nothing")
    for n in range(9):
        append(dovecot, mailbox.email_address, message(f"quote {n}"))
    refreshed = calls_in_this_process(monkeypatch, reading, "statistics_refresh",
                                      lambda *models, **kw: [m.__name__ for m in models])

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert result.error == "" and result.new == 9
    # At 2 new messages, then once 4 times as many are stored (8): twice, not after each of the 5 batches.
    assert refreshed == [["Shipment"], ["Shipment"]]


def test_it_creates_the_archive_folder_when_it_is_missing(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot, post_processing="archive", archive_folder="Processed/TMS")
    append(dovecot, mailbox.email_address, message("quote to file"))

    assert mailbox_poll(mailbox_id=mailbox.pk).post_processed == 1

    assert subjects(dovecot, mailbox.email_address, "Processed/TMS") == ["quote to file"]


def test_it_repairs_a_crash_between_commit_and_action_on_the_next_poll(
    bob: Staff, dovecot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox = make_reader(bob, dovecot, post_processing="archive")
    append(dovecot, mailbox.email_address, message("quote one"))
    append(dovecot, mailbox.email_address, message("pickup two"))

    def crash(*args: Any, **kwargs: Any) -> None:
        raise ConnectionResetError("worker died after the commit")

    monkeypatch.setattr(intake, "_apply", crash)
    first = mailbox_poll(mailbox_id=mailbox.pk)
    assert first.error and first.new == 2 and first.post_processed == 0
    rows = stored(mailbox)
    assert [r.status for r in rows] == [InboundMessage.Status.PROCESSED] * 2
    assert all(r.post_processed_at is None for r in rows)
    assert len(subjects(dovecot, mailbox.email_address)) == 2
    monkeypatch.undo()
    mailbox.refresh_from_db()
    mailbox.status = Mailbox.Status.ACTIVE

    second = mailbox_poll(mailbox_id=mailbox.pk)

    assert second.error == ""
    assert (second.fetched, second.new, second.post_processed) == (0, 0, 2)
    assert subjects(dovecot, mailbox.email_address) == []
    assert subjects(dovecot, mailbox.email_address, "Archive") == ["pickup two", "quote one"]
    assert len(stored(mailbox)) == 2 and LOG.calls.count("quote one") == 1


def test_it_quarantines_a_poison_message_while_the_others_proceed(
    bob: Staff, dovecot: Any, settings: Any
) -> None:
    settings.MAILBOX_MAX_ATTEMPTS = 3
    mailbox = make_reader(bob, dovecot, post_processing="archive")
    append(dovecot, mailbox.email_address, message("quote fine"))
    append(dovecot, mailbox.email_address, message("poison"))
    append(dovecot, mailbox.email_address, message("pickup fine"))
    LOG.raise_for.add("poison")

    first = mailbox_poll(mailbox_id=mailbox.pk)
    assert (first.new, first.quote, first.pickup, first.failed, first.post_processed) == (3, 1, 1, 1, 2)
    poison = InboundMessage.unscoped.get(mailbox=mailbox, subject="poison")
    assert poison.status == InboundMessage.Status.FAILED and poison.attempts == 1
    assert "handler cannot cope" in poison.error

    assert mailbox_poll(mailbox_id=mailbox.pk).failed == 1
    third = mailbox_poll(mailbox_id=mailbox.pk)
    assert (third.failed, third.quarantined) == (0, 1)
    poison.refresh_from_db()
    assert poison.status == InboundMessage.Status.QUARANTINED and poison.attempts == 3
    # Quarantined: no more attempts, no action; the message waits in the INBOX.
    assert mailbox_poll(mailbox_id=mailbox.pk).quarantined == 0
    assert LOG.calls.count("poison") == 3
    assert subjects(dovecot, mailbox.email_address) == ["poison"]
    assert subjects(dovecot, mailbox.email_address, "Archive") == ["pickup fine", "quote fine"]

    # Retry after the fix: processed and archived like the others.
    LOG.raise_for.clear()
    intake.inbound_message_retry(message=poison)
    poison.refresh_from_db()
    assert poison.status == InboundMessage.Status.RECEIVED and poison.attempts == 0
    again = mailbox_poll(mailbox_id=mailbox.pk)
    assert (again.other, again.post_processed) == (1, 1)
    poison.refresh_from_db()
    assert poison.status == InboundMessage.Status.PROCESSED
    assert subjects(dovecot, mailbox.email_address) == []


NOISE = {
    "auto-reply": ({"Auto-Submitted": "auto-replied"}, "customer@shipper.test"),
    "out-of-office": ({"X-Autoreply": "yes"}, "customer@shipper.test"),
    "bulk": ({"List-Id": "<news.shipper.test>", "List-Unsubscribe": "<mailto:u@shipper.test>"},
             "news@shipper.test"),
}


def _bounce(to: str) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.shipper.test>\r\n"
        f"To: {to}\r\nSubject: quote bounce Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.shipper.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nquote request could not be delivered\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.shipper.test\r\n\r\n"
        "Final-Recipient: rfc822; someone@shipper.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
    ).encode()


def test_it_ignores_noise_without_asking_the_handlers(
    bob: Staff, dovecot: Any
) -> None:
    mailbox = make_reader(bob, dovecot, post_processing="mark_read")
    address = mailbox.email_address
    for name, (headers, sender) in NOISE.items():
        append(dovecot, address, message(f"quote {name}", sender=sender, headers=headers))
    append(dovecot, address, _bounce(address))
    append(dovecot, address, message("quote own mail", sender=f"Bob <{address.upper()}>"))
    OutboundMessage.objects.for_tenant(bob.tenant).create(
        mailbox=mailbox, from_address="x@acme.test", message_id="<sent-by-us-1@tms.test>", subject="s"
    )
    append(dovecot, address, message("quote our copy", message_id="<sent-by-us-1@tms.test>"))
    append(dovecot, address, message("quote real request"))

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.new, result.quote, result.other, result.post_processed) == (7, 1, 6, 7)
    assert LOG.calls == ["quote real request"]
    rows = {m.subject: m for m in stored(mailbox)}
    noise = [m for s, m in rows.items() if s != "quote real request"]
    assert all(m.status == InboundMessage.Status.IGNORED and m.category == "other" and m.reason for m in noise)
    assert rows["quote own mail"].reason == "the mailbox owner's own mail"
    assert rows["quote our copy"].reason == "sent by this system"
    assert rows["quote real request"].status == InboundMessage.Status.PROCESSED


def test_it_shows_quarantined_and_too_large_mail_with_a_retry_button(
    bob: Staff, alice_client: Client, bob_client: Client, charlie_client: Client, dovecot: Any,
    settings: Any,
) -> None:
    settings.MAILBOX_MAX_ATTEMPTS = 1
    settings.MAILBOX_MAX_MESSAGE_BYTES = 4096
    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("poison pill"))
    append(dovecot, mailbox.email_address, message("quote huge", body="y" * 9000 + "\n"))
    LOG.raise_for.add("poison pill")
    assert mailbox_poll(mailbox_id=mailbox.pk).quarantined == 1
    poison = InboundMessage.unscoped.get(mailbox=mailbox, subject="poison pill")
    url = reverse("mailbox-inbound", kwargs={"id": mailbox.public_id})
    retry = reverse("mailbox-inbound-retry", kwargs={"id": mailbox.public_id, "message_id": poison.public_id})

    page = bob_client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "poison pill" in text and "handler cannot cope" in text and "Quarantined" in text
    assert "quote huge" in text and "Too large" in text and retry in text
    assert alice_client.get(url).status_code == 200  # the company's admin
    assert charlie_client.get(url).status_code == 404  # another company
    assert charlie_client.post(retry).status_code == 404
    poison.refresh_from_db()
    assert poison.status == InboundMessage.Status.QUARANTINED

    response = bob_client.post(retry)

    assert response.status_code == 302
    poison.refresh_from_db()
    assert poison.status == InboundMessage.Status.RECEIVED and poison.error == ""


def test_it_writes_uid_sets_as_ranges() -> None:
    assert uid_ranges([7, 1, 2, 3, 5, 8, 3]) == "1:3,5,7:8"
    assert uid_ranges(range(1, 10001)) == "1:10000"
    assert uid_ranges([]) == ""


def test_it_puts_as_many_uids_in_a_command_as_its_line_may_carry() -> None:
    # Consecutive UIDs (a pass's usual messages): one command, however many.
    assert [s for _, s in uid_set_chunks((pk, uid) for pk, uid in enumerate(range(1, 20_001)))] == ["1:20000"]
    scattered = [(uid * 10, uid) for uid in range(100_001, 160_001, 2)]  # 30,000 lone UIDs

    chunks = uid_set_chunks(reversed(scattered), max_bytes=8000)

    assert [row for rows, _ in chunks for row in rows] == scattered  # each once, in UID order
    assert all(uid_set == uid_ranges(uid for _, uid in rows) for rows, uid_set in chunks)
    assert all(3900 <= len(uid_set) <= 8000 for _, uid_set in chunks[:-1]) and len(chunks[-1][1]) <= 8000
    assert uid_set_chunks([]) == []


def test_a_handlers_result_is_stored_as_asdict_would_store_it() -> None:
    from dataclasses import asdict, fields

    result = intake.IntakeResult(category="quote", reason="created SHP-000001", records={"shipment": 1},
                                 data={"created": ["a", "b"], "contact": None, "failed": {"x": "y"}}, ignored=True)

    assert intake._result_json(result) == asdict(result)
    assert set(intake._result_json(result)) == {f.name for f in fields(intake.IntakeResult)}  # none forgotten


def test_it_makes_handler_output_plain_json_data() -> None:
    from enum import StrEnum
    from types import MappingProxyType

    class Kind(StrEnum):
        QUOTE = "quote"

    class Odd:
        def __str__(self) -> str:
            return "odd"

    value = {"a": (1, 2.5, True, None), 3: {"b": {"x"}}, "kind": Kind.QUOTE, "view": MappingProxyType({"c": Odd()}),
             "list": [frozenset(), "s"]}
    out = intake.jsonable(value)
    assert out == {"a": [1, 2.5, True, None], "3": {"b": ["x"]}, "kind": "quote", "view": {"c": "odd"},
                   "list": [[], "s"]}
    assert type(out["kind"]) is Kind  # a str subclass is kept as it is, as json.dumps writes it


def test_it_post_processes_only_the_given_messages_waiting_for_the_action_in_this_folder(
    bob: Staff, dovecot: Any
) -> None:
    mailbox = make_reader(bob, dovecot)
    other = make_reader(bob, dovecot)
    for subject in ("waiting", "moved away", "failed", "already done"):
        append(dovecot, mailbox.email_address, message(subject))
    append(dovecot, other.email_address, message("another mailbox"))
    assert mailbox_poll(mailbox_id=mailbox.pk).new == 4 and mailbox_poll(mailbox_id=other.pk).new == 1
    rows = {m.subject: m for m in stored(mailbox)}
    elsewhere = stored(other)[0]
    done_at = rows["already done"].post_processed_at
    uidvalidity = rows["waiting"].uidvalidity
    InboundMessage.unscoped.filter(pk__in=[rows["waiting"].pk, rows["moved away"].pk, rows["failed"].pk,
                                           elsewhere.pk]).update(post_processed_at=None)
    InboundMessage.unscoped.filter(pk=rows["moved away"].pk).update(uidvalidity=uidvalidity - 1)
    InboundMessage.unscoped.filter(pk=rows["failed"].pk).update(status=InboundMessage.Status.FAILED)
    mailbox.post_processing = Mailbox.PostProcessing.MARK_READ

    with imap(dovecot, mailbox.email_address) as client:
        client.select_folder("INBOX")
        applied = intake.messages_post_process(
            client=client, mailbox=mailbox, folder="INBOX", uidvalidity=uidvalidity,
            message_ids=[m.pk for m in rows.values()] + [elsewhere.pk])

    assert applied == 1
    seen = {v["subject"] for v in folder_state(dovecot, mailbox.email_address).values() if b"\\Seen" in v["flags"]}
    assert seen == {"waiting"}
    after = {m.subject: m.post_processed_at for m in stored(mailbox)}
    assert after["waiting"] is not None and after["moved away"] is not None  # marked done, no UID here
    assert after["failed"] is None and after["already done"] == done_at
    elsewhere.refresh_from_db()
    assert elsewhere.post_processed_at is None


def _batch(*specs: tuple[str, str, str | None]) -> tuple[list[Any], dict[int, Any]]:
    from types import SimpleNamespace

    messages = [SimpleNamespace(pk=pk, message_id=mid) for pk, (mid, _, _) in enumerate(specs, 1)]
    ready = {pk: SimpleNamespace(classification=SimpleNamespace(category=category, in_reply_to=reply, references=()))
             for pk, (_, category, reply) in enumerate(specs, 1)}
    return messages, ready


def test_a_batch_runs_the_messages_that_may_make_shipments_last() -> None:
    # The first new shipment locks the tenant's counter until commit: the other worker waits.
    messages, ready = _batch(("<a@x>", "quote", None), ("<b@x>", "operations", None), ("<c@x>", "pickup", None),
                             ("<d@x>", "other", "<elsewhere@y>"), ("<e@x>", "quote", None))

    ordered = intake._in_intake_order(messages, ready)  # type: ignore[arg-type]

    assert [m.pk for m in ordered] == [2, 4, 1, 3, 5]


def test_a_batch_keeps_arrival_order_with_a_reply_to_its_own_message_or_an_unknown_verdict() -> None:
    messages, ready = _batch(("<a@x>", "operations", None), ("<Q@X>", "quote", None), ("<r@x>", "other", "<q@x>"))
    assert [m.pk for m in intake._in_intake_order(messages, ready)] == [1, 2, 3]  # type: ignore[arg-type]

    messages, ready = _batch(("<a@x>", "quote", None), ("<b@x>", "operations", None))
    del ready[2]
    assert [m.pk for m in intake._in_intake_order(messages, ready)] == [1, 2]  # type: ignore[arg-type]
