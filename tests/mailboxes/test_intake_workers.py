"""The intake run by the pool's workers (mailboxes/prepare.py, intake mode): each worker classifies a
batch and processes it in its own transaction on its own database connection. Same outcome as the
polling process doing it; a worker that dies, hangs or raises, before or after committing, loses
no message and processes none twice. Transactional tests: the workers' connections see only what
is committed."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, transaction

from mailboxes import intake, prepare
from mailboxes.models import InboundMessage, Mailbox
from mailboxes.prepare import PreparePool
from mailboxes.reading import mailbox_poll, thread_refs
from shipments.models import Activity, Shipment
from tests.factories import make_staff, make_tenant
from tests.mailboxes.reading_support import (  # noqa: F401
    append,
    calls_in_this_process,
    make_reader,
    reading_settings,
    stored,
)
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("reading_settings")]

CORPUS = sorted((Path(__file__).resolve().parent.parent / "corpus" / "messages").glob("*.eml"))
COUNT = 16


@pytest.fixture(autouse=True)
def small_batches(settings: Any) -> None:
    # Several fetch and intake batches out of a few messages, two workers taking them in turn.
    settings.MAILBOX_FETCH_BATCH = 6
    settings.MAILBOX_INTAKE_BATCH = 3
    settings.MAILBOX_INTAKE_PROCESSES = 2
    settings.MAILBOX_INTAKE_IN_WORKERS = True


@pytest.fixture
def parent_intakes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Messages whose intake ran in this process (a worker counts in its own copy)."""
    return calls_in_this_process(monkeypatch, intake, "_run_intake", lambda message, **kwargs: message.pk)


def staff_of(slug: str) -> Staff:
    return make_staff(make_tenant(slug, slug.title()), f"owner@{slug}.test", "Owner")


def corpus_mailbox(staff: Staff, dovecot: Any) -> Mailbox:
    mailbox = make_reader(staff, dovecot, post_processing=Mailbox.PostProcessing.MARK_READ)
    for path in CORPUS[:COUNT]:
        append(dovecot, mailbox.email_address, path.read_bytes())
    return mailbox


def outcomes(mailbox: Mailbox) -> list[tuple[int, str, str, str, int, bool]]:
    """Each stored message's outcome. Shipment numbers are left out of the reasons: two workers
    take the tenant's counter in the order their batches get to it, so which message's shipment
    gets which number may differ from a run in one process (never a gap, never twice)."""
    return [(m.uid, m.status, m.category, NUMBER.sub("SHP-n", m.reason), m.attempts,
             m.post_processed_at is not None) for m in stored(mailbox)]


NUMBER = re.compile(r"SHP-\d+")


def made(mailbox: Mailbox) -> tuple[list[str], list[int], int]:
    """The shipment numbers of the mailbox's tenant, the UIDs of the messages that made them, and
    the number of activities."""
    shipments = Shipment.objects.for_tenant(mailbox.tenant).select_related("source_message")
    numbers = sorted(s.number for s in shipments)
    sources = sorted(s.source_message.uid for s in shipments if s.source_message)
    return numbers, sources, Activity.objects.for_tenant(mailbox.tenant).count()


def test_the_workers_run_the_intake_with_the_same_outcome_as_the_polling_process(
    dovecot: Any, settings: Any, parent_intakes: list[int]
) -> None:
    pooled = corpus_mailbox(staff_of("pooled"), dovecot)
    alone = corpus_mailbox(staff_of("alone"), dovecot)

    result = mailbox_poll(mailbox_id=pooled.pk)
    assert (result.error, result.new, result.failed, result.post_processed) == ("", COUNT, 0, COUNT)
    assert parent_intakes == []  # every batch ran in a worker
    assert result.quote + result.pickup + result.operations + result.other == COUNT  # counted here

    settings.MAILBOX_INTAKE_PROCESSES = 0
    assert mailbox_poll(mailbox_id=alone.pk).new == COUNT
    assert len(parent_intakes) == COUNT

    assert [row[1:] for row in outcomes(pooled)] == [row[1:] for row in outcomes(alone)]
    assert all(attempts == 1 and done for *_, attempts, done in outcomes(pooled))
    numbers, sources, activities = made(pooled)
    assert len(numbers) == len(sources) > 1 and (numbers, sources, activities) == made(alone)


def test_the_first_and_the_last_fetch_batch_go_to_every_worker(
    dovecot: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, parent_intakes: list[int]
) -> None:
    # One intake batch a fetch batch, except the first and the last: split in one per worker, so
    # that both start on the first fetch and finish together (the old code handed over 6, 6, 4).
    settings.MAILBOX_INTAKE_BATCH = 6
    handed = calls_in_this_process(monkeypatch, PreparePool, "submit_intake", lambda pool, items: len(items))
    mailbox = corpus_mailbox(staff_of("split"), dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed, result.post_processed) == ("", COUNT, 0, COUNT)
    assert handed == [3, 3, 6, 2, 2]
    assert parent_intakes == []  # every batch ran in a worker
    assert all(attempts == 1 and done for *_, attempts, done in outcomes(mailbox))


def test_what_is_done_gets_its_action_while_the_workers_finish_the_last_batch(
    dovecot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fetch batches 1:6, 7:12 and 13:16: the action on the first two runs before the pass waits
    # for the last one (the old code ran it on all 16 at the end, the workers idle meanwhile).
    actions = calls_in_this_process(monkeypatch, intake, "_apply", lambda client, mailbox, **kw: kw["uid_set"])
    mailbox = corpus_mailbox(staff_of("overlap"), dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed, result.post_processed) == ("", COUNT, 0, COUNT)
    assert actions == ["1:12", "13:16"]
    assert all(attempts == 1 and done for *_, attempts, done in outcomes(mailbox))


# Faults in place of prepare._intake (same arguments): the worker dies or fails before its batch
# commits, or dies after committing it, before the polling process hears of it.
def _dies_before(items: Any, *args: Any) -> Any:
    os._exit(3)


def _raises(items: Any, *args: Any) -> Any:
    raise ValueError("a bug in a worker")


def _hangs(items: Any, *args: Any) -> Any:
    time.sleep(120)


REAL_INTAKE = prepare._intake


def _dies_after_commit(items: Any, *args: Any) -> Any:
    REAL_INTAKE(items, *args)
    os._exit(3)


@pytest.mark.parametrize("fault", [_dies_before, _raises, _hangs, _dies_after_commit],
                         ids=["dies", "raises", "hangs", "dies-after-commit"])
def test_a_failing_worker_loses_no_message_and_repeats_none(
    dovecot: Any, monkeypatch: pytest.MonkeyPatch, parent_intakes: list[int], fault: Any
) -> None:
    monkeypatch.setattr(prepare, "_intake", fault)
    monkeypatch.setattr(prepare, "PREPARE_TIMEOUT", 1.0)
    mailbox = corpus_mailbox(staff_of("faulty"), dovecot)
    reference = corpus_mailbox(staff_of("reference"), dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed, result.quarantined) == ("", COUNT, 0, 0)
    assert result.post_processed == COUNT
    rows = outcomes(mailbox)
    assert len(rows) == COUNT and all(attempts == 1 and done for *_, attempts, done in rows)
    if fault is _dies_after_commit:
        # The batch the worker committed is not run again here; the rest of the pass is.
        assert 0 < len(parent_intakes) < COUNT
    else:
        assert len(parent_intakes) == COUNT
    monkeypatch.setattr(prepare, "_intake", REAL_INTAKE)
    mailbox_poll(mailbox_id=reference.pk)
    assert [row[1:] for row in rows] == [row[1:] for row in outcomes(reference)]
    assert made(mailbox) == made(reference)


def test_inside_a_transaction_the_workers_only_classify(settings: Any) -> None:
    staff = staff_of("atomic")
    outside = PreparePool.for_pass(new=100, tenant=staff.tenant)
    with transaction.atomic():
        inside = PreparePool.for_pass(new=100, tenant=staff.tenant)
    settings.MAILBOX_INTAKE_IN_WORKERS = False
    switched_off = PreparePool.for_pass(new=100, tenant=staff.tenant)
    try:
        assert outside is not None and outside.intake
        assert inside is not None and not inside.intake  # its workers could not see uncommitted rows
        assert switched_off is not None and not switched_off.intake
    finally:
        for pool in (outside, inside, switched_off):
            if pool is not None:
                pool.close()


def test_a_batch_the_database_rolls_back_for_a_deadlock_runs_again_and_blames_no_message(
    dovecot: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MAILBOX_INTAKE_PROCESSES = 0
    real = intake._process_batch
    deadlocks: list[int] = []

    def deadlocking_once(ids: list[int], current: list[int], *args: Any) -> Any:
        if not deadlocks:
            deadlocks.append(ids[0])
            with transaction.atomic():  # as the database does it: mid-batch, a message in hand
                current[:] = [ids[0]]
                try:
                    raise psycopg.errors.DeadlockDetected("deadlock detected")
                except psycopg.Error as exc:
                    raise OperationalError(str(exc)) from exc
        return real(ids, current, *args)

    monkeypatch.setattr(intake, "_process_batch", deadlocking_once)
    mailbox = corpus_mailbox(staff_of("deadlock"), dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert deadlocks and (result.new, result.failed, result.quarantined) == (COUNT, 0, 0)
    assert all(attempts == 1 and done for *_, attempts, done in outcomes(mailbox))
    assert intake.is_transient(OperationalError("x").with_traceback(None)) is False


QUOTE_ID = b"<the-quote-018@shipper.test>"


def _slow_for_the_quote(items: Any, *args: Any) -> Any:
    if any(QUOTE_ID in raw for _, raw in items):
        time.sleep(1.5)
    return REAL_INTAKE(items, *args)


def test_a_reply_waits_for_the_batch_of_the_message_it_answers(
    dovecot: Any, monkeypatch: pytest.MonkeyPatch, parent_intakes: list[int]
) -> None:
    """The quote's batch is slow in one worker; the reply, in the next batch, would be run by the
    other worker meanwhile and miss the quote's shipment. It waits instead, and is filed on it."""
    quote = (CORPUS[0].parent / "018.eml").read_bytes()  # a quote with every detail: a shipment
    quote = re.sub(rb"(?im)^Message-ID:[^\r\n]*", b"Message-ID: " + QUOTE_ID, quote, count=1)
    assert QUOTE_ID in quote
    filler = [p.read_bytes() for p in CORPUS[1:5]]
    reply = (b"From: Dana <dana@shipper.test>\r\nTo: owner@thread.test\r\nSubject: Re: rate request\r\n"
             b"Message-ID: <reply-1@shipper.test>\r\nIn-Reply-To: " + QUOTE_ID + b"\r\n"
             b"References: " + QUOTE_ID + b"\r\n\r\nThanks. Please also add a liftgate at delivery.\r\n")
    monkeypatch.setattr(prepare, "_intake", _slow_for_the_quote)
    mailbox = make_reader(staff_of("thread"), dovecot)
    for raw in [quote, *filler[:2], filler[2], reply, filler[3]]:  # quote in batch 1, reply in batch 2
        append(dovecot, mailbox.email_address, raw)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed) == ("", 6, 0)
    tenant_messages = InboundMessage.objects.for_tenant(mailbox.tenant)
    source = tenant_messages.get(message_id=QUOTE_ID.decode())
    answer = tenant_messages.get(message_id="<reply-1@shipper.test>")
    shipment = Shipment.objects.for_tenant(mailbox.tenant).get(source_message=source)
    assert Activity.objects.for_tenant(mailbox.tenant).filter(shipment=shipment, inbound_message=answer).exists()
    assert answer.processed_at > source.processed_at
    assert parent_intakes == []  # both batches ran in the workers


def test_thread_refs_reads_in_reply_to_and_folded_references() -> None:
    headers = ("From: a@b.test\r\nreferences: <one@x.test>\r\n <two@x.test>\r\n\t<three@x.test>\r\n"
               "In-Reply-To: Dana's note <four@x.test>\r\nSubject: see <not-a-ref@x.test>\r\n")
    assert thread_refs(headers) == {"<one@x.test>", "<two@x.test>", "<three@x.test>", "<four@x.test>"}
    assert thread_refs("Subject: hello\r\n") == set()
