"""Classifying a big poll's new messages in worker processes (mailboxes/prepare.py): the same
outcome as in-process, and a worker that dies or hangs never loses or holds up a message."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import classifier
from mailboxes import prepare
from mailboxes.intake import messages_process
from mailboxes.models import InboundMessage, Mailbox
from mailboxes.prepare import Prepared, PreparePool
from mailboxes.reading import mailbox_poll
from tests.mailboxes.reading_support import append, make_reader, reading_settings, stored  # noqa: F401
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings")]

CORPUS = sorted((Path(__file__).resolve().parent.parent / "corpus" / "messages").glob("*.eml"))
COUNT = 14


@pytest.fixture(autouse=True)
def small_batches(settings: Any) -> None:
    # Several fetch and intake batches out of a few messages: the pool, the batch ahead and the
    # hand-over between batches all run.
    settings.MAILBOX_INTAKE_HANDLERS = ["mailboxes.intake.classify_handler"]
    settings.MAILBOX_FETCH_BATCH = 5
    settings.MAILBOX_INTAKE_BATCH = 3
    settings.MAILBOX_INTAKE_PROCESSES = 1


@pytest.fixture
def parent_classifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts classifier.classify calls made in this process (a worker counts in its own copy)."""
    calls: list[int] = []
    real = classifier.classify
    parent = os.getpid()

    def counting(raw: bytes, **kwargs: Any) -> Any:
        if os.getpid() == parent:
            calls.append(1)
        return real(raw, **kwargs)

    monkeypatch.setattr(classifier, "classify", counting)
    return calls


def corpus_mailbox(staff: Staff, dovecot: Any) -> Mailbox:
    mailbox = make_reader(staff, dovecot)
    for path in CORPUS[:COUNT]:
        append(dovecot, mailbox.email_address, path.read_bytes())
    return mailbox


def outcomes(mailbox: Mailbox) -> list[tuple[int, str, str, str]]:
    return [(m.uid, m.status, m.category, m.reason) for m in stored(mailbox)]


def classified(mailbox: Mailbox) -> int:
    """How many of the stored messages needed a verdict (noise is ignored before any)."""
    return sum(1 for m in stored(mailbox) if "noise" not in (m.result or {}))


def expected(mailbox: Mailbox) -> list[tuple[int, str, str, str]]:
    """What the classify handler says of each stored message when it classifies in this process."""
    ids = [m.pk for m in stored(mailbox)]
    InboundMessage.unscoped.filter(pk__in=ids).update(status=InboundMessage.Status.RECEIVED)
    messages_process(message_ids=ids)
    return outcomes(mailbox)


def _die(items: Any, prefix: Any, rules: Any) -> Any:
    os._exit(3)


def _hang(items: Any, prefix: Any, rules: Any) -> Any:
    time.sleep(120)


def test_it_classifies_a_big_poll_in_the_workers_with_the_same_outcome(
    bob: Staff, dovecot: Any, parent_classifies: list[int]
) -> None:
    mailbox = corpus_mailbox(bob, dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed) == ("", COUNT, 0)
    assert parent_classifies == []  # every verdict came from a worker
    pooled = outcomes(mailbox)
    assert len(pooled) == COUNT and all(status in ("processed", "ignored") for _, status, _, _ in pooled)
    assert len({category for _, _, category, _ in pooled}) >= 3
    assert expected(mailbox) == pooled
    assert parent_classifies  # and the comparison did classify here


def test_it_classifies_in_process_without_workers(
    bob: Staff, dovecot: Any, settings: Any, parent_classifies: list[int]
) -> None:
    settings.MAILBOX_INTAKE_PROCESSES = 0
    mailbox = corpus_mailbox(bob, dovecot)

    assert mailbox_poll(mailbox_id=mailbox.pk).new == COUNT

    assert len(parent_classifies) == classified(mailbox)


@pytest.mark.parametrize("fault", [_die, _hang], ids=["dies", "hangs"])
def test_it_classifies_in_process_when_a_worker_fails(
    bob: Staff, dovecot: Any, monkeypatch: pytest.MonkeyPatch, parent_classifies: list[int], fault: Any
) -> None:
    monkeypatch.setattr(prepare, "_prepare", fault)
    monkeypatch.setattr(prepare, "PREPARE_TIMEOUT", 1.0)
    mailbox = corpus_mailbox(bob, dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed, result.quarantined) == ("", COUNT, 0, 0)
    assert len(parent_classifies) == classified(mailbox)  # none lost, each classified here once
    assert expected(mailbox) == outcomes(mailbox)


def test_it_uses_a_verdict_only_for_the_bytes_it_was_made_from(bob: Staff, dovecot: Any) -> None:
    mailbox = corpus_mailbox(bob, dovecot)
    mailbox_poll(mailbox_id=mailbox.pk)
    truth = expected(mailbox)
    ids = [m.pk for m in stored(mailbox)]
    InboundMessage.unscoped.filter(pk__in=ids).update(status=InboundMessage.Status.RECEIVED)
    wrong = Prepared(digest=prepare._digest(b"other bytes"), noise="bulk mail",
                     classification=classifier.classify(b"Subject: nothing\r\n\r\nhi"))

    messages_process(message_ids=ids, prepared=lambda pk: wrong)

    assert outcomes(mailbox) == truth
    assert not wrong.fits(stored(mailbox)[0].raw)


def test_it_starts_no_workers_for_a_small_poll(settings: Any, bob: Staff) -> None:
    assert PreparePool.for_pass(new=settings.MAILBOX_INTAKE_BATCH, tenant=bob.tenant) is None
    settings.MAILBOX_INTAKE_PROCESSES = 0
    assert PreparePool.for_pass(new=1000, tenant=bob.tenant) is None
