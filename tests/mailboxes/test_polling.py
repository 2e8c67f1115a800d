"""The scheduler's chunked polls (mailboxes/polling.py) against a real Dovecot."""

from __future__ import annotations

import imaplib
import socket
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from mailboxes import locks, polling, sessions
from mailboxes.models import FolderCursor, InboundMessage, Mailbox
from mailboxes.reading import mailbox_poll
from tests.mailboxes.reading_support import (  # noqa: F401 - fixtures
    append,
    fresh_kept_connections,
    handler_log,
    make_reader,
    message,
    reading_settings,
    stored,
)
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings", "handler_log", "fresh_kept_connections")]


class Queue:
    """What a chunk queued: full polls handed off, and further chunks."""

    def __init__(self) -> None:
        self.handed_off: list[int] = []
        self.chunks = 0

    def more(self) -> None:
        self.chunks += 1

    def run(self, **options: Any) -> polling.ChunkResult:
        return polling.mailboxes_poll_chunk(hand_off=self.handed_off.append, more=self.more, **options)


def readers(staff: Staff, dovecot: Any, count: int) -> list[Mailbox]:
    """Mailboxes polled once (cursor made, connection kept), then due again."""
    boxes = [make_reader(staff, dovecot) for _ in range(count)]
    for box in boxes:
        assert mailbox_poll(mailbox_id=box.pk).error == ""
    due_now(boxes)
    return boxes


def due_now(boxes: list[Mailbox]) -> None:
    Mailbox.unscoped.filter(pk__in=[b.pk for b in boxes]).update(next_poll_at=None)


def counting_commands() -> tuple[Counter[str], Any]:
    seen: Counter[str] = Counter()
    original = imaplib.IMAP4._command  # type: ignore[attr-defined]

    def counting(self: Any, name: str, *args: Any) -> Any:
        seen[name] += 1
        return original(self, name, *args)

    imaplib.IMAP4._command = counting  # type: ignore[attr-defined]
    return seen, original


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_it_polls_idle_mailboxes_with_one_select_each_and_records_them(
    bob: Staff, dovecot: Any, settings: Any, redis_server: Any, backend: str
) -> None:
    if backend == "redis":
        settings.REDIS_URL = redis_server.url
    boxes = readers(bob, dovecot, 3)
    before = timezone.now()
    queue = Queue()

    seen, original = counting_commands()
    try:
        out = queue.run()
    finally:
        imaplib.IMAP4._command = original  # type: ignore[attr-defined]

    ids = sorted(b.pk for b in boxes)
    assert sorted(out.claimed) == ids and sorted(out.idle) == ids
    assert dict(seen) == {"SELECT": 3}  # on the kept connections: no login, no NOOP, no SEARCH
    assert (queue.handed_off, queue.chunks, out.failed, out.skipped) == ([], 0, [], [])
    for box in Mailbox.unscoped.filter(pk__in=ids):
        assert box.last_polled_at is not None and box.last_polled_at >= before
        assert box.next_poll_at is not None and box.next_poll_at > before
        assert box.last_error == "" and box.consecutive_failures == 0
    for box in boxes:  # every lock released
        lock = locks.acquire(locks.mailbox_poll_key(box.pk), ttl=10)
        assert lock is not None
        locks.release(lock)
    # Claimed and recorded: a second chunk right after finds nothing due.
    assert queue.run().claimed == []


def test_it_reads_a_little_new_mail_itself_and_hands_off_the_rest(
    bob: Staff, dovecot: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(polling, "INLINE_NEW", 2)
    few, many, repair, idle = readers(bob, dovecot, 4)
    fresh = make_reader(bob, dovecot)  # never polled: no cursor yet
    full = make_reader(bob, dovecot)  # never polled either, more mail in the folder
    append(dovecot, few.email_address, message("quote few"))
    for n in range(3):
        append(dovecot, many.email_address, message(f"quote many {n}"))
        append(dovecot, full.email_address, message(f"quote full {n}"))
    append(dovecot, repair.email_address, message("quote repair"))
    append(dovecot, fresh.email_address, message("quote fresh"))
    assert mailbox_poll(mailbox_id=repair.pk).new == 1
    InboundMessage.unscoped.filter(mailbox=repair).update(status=InboundMessage.Status.RECEIVED)  # a crash left it
    due_now([few, many, repair, idle])
    queue = Queue()

    out = queue.run()

    assert sorted(out.polled) == sorted([few.pk, fresh.pk]) and out.idle == [idle.pk]
    assert [m.subject for m in stored(few)] == ["quote few"]  # read in the chunk, on its kept connection
    assert [m.subject for m in stored(fresh)] == ["quote fresh"]  # a first poll of a small folder too
    assert FolderCursor.objects.filter(mailbox=fresh).exists()
    assert sorted(queue.handed_off) == sorted([many.pk, repair.pk, full.pk])
    assert stored(many) == [] and stored(full) == []
    for pk in queue.handed_off:  # what tasks.poll_mailbox runs; the chunk released their locks
        result = mailbox_poll(mailbox_id=pk)
        assert result.error == "" and result.skipped == ""
    assert len(stored(many)) == 3 and len(stored(full)) == 3
    assert InboundMessage.unscoped.get(mailbox=repair).status == InboundMessage.Status.PROCESSED


def test_it_claims_the_mailboxes_whose_connection_it_keeps_first(bob: Staff, dovecot: Any) -> None:
    boxes = readers(bob, dovecot, 4)
    sessions.kept_close_all()
    for box in boxes[2:]:
        assert mailbox_poll(mailbox_id=box.pk).error == ""
    due_now(boxes)

    first = Queue().run(size=2)
    second = Queue().run(size=2)

    assert sorted(first.claimed) == sorted(b.pk for b in boxes[2:])  # kept here: no new login
    assert sorted(second.claimed) == sorted(b.pk for b in boxes[:2])  # then the others
    assert sorted(first.idle + second.idle) == sorted(b.pk for b in boxes)


def test_it_leaves_a_mailbox_whose_poll_runs_elsewhere(bob: Staff, dovecot: Any) -> None:
    busy, other = readers(bob, dovecot, 2)
    elsewhere = locks.acquire(locks.mailbox_poll_key(busy.pk), ttl=60)
    assert elsewhere is not None
    try:
        out = Queue().run()
    finally:
        locks.release(elsewhere)

    assert out.skipped == [busy.pk] and out.idle == [other.pk]
    busy.refresh_from_db()
    assert busy.last_polled_at is not None and busy.last_polled_at < timezone.now() - timedelta(microseconds=1)
    assert Mailbox.unscoped.get(pk=other.pk).last_polled_at > busy.last_polled_at


def test_it_records_a_broken_mailbox_alone_and_polls_the_others(bob: Staff, dovecot: Any) -> None:
    broken, healthy, dead = readers(bob, dovecot, 3)
    Mailbox.unscoped.filter(pk=broken.pk).update(secret="wrong password")  # a new login, refused
    kept = sessions._entries()[dead.pk].client
    kept._imap.sock.shutdown(socket.SHUT_RDWR)  # its kept connection died: SELECT fails, a new login follows
    append(dovecot, healthy.email_address, message("quote healthy"))

    out = Queue().run()

    assert out.failed == [broken.pk]
    assert out.polled == [healthy.pk] and out.idle == [dead.pk]
    assert [m.subject for m in stored(healthy)] == ["quote healthy"]
    broken.refresh_from_db()
    assert broken.last_error and broken.status == Mailbox.Status.NEEDS_REAUTHORIZATION
    assert sessions._entries()[dead.pk].client is not kept


def test_it_gives_back_what_it_did_not_reach_within_its_budget(bob: Staff, dovecot: Any) -> None:
    boxes = readers(bob, dovecot, 2)
    queue = Queue()

    out = queue.run(budget=-1)  # over budget before the first mailbox

    assert sorted(out.given_back) == sorted(b.pk for b in boxes) and out.idle == []
    assert queue.chunks == 1  # another chunk will take them
    assert Mailbox.unscoped.filter(pk__in=out.given_back, next_poll_at=None).count() == 2  # due again
    assert sorted(Queue().run().idle) == sorted(b.pk for b in boxes)  # and their locks were released


def test_it_unlocks_what_it_gives_back_before_another_chunk_can_take_it(bob: Staff, dovecot: Any) -> None:
    boxes = readers(bob, dovecot, 2)
    taken: list[polling.ChunkResult] = []
    queue = Queue()
    queue.more = lambda: taken.append(Queue().run())  # type: ignore[method-assign]  # another worker, at once

    out = queue.run(budget=-1)

    assert sorted(out.given_back) == sorted(b.pk for b in boxes)
    assert len(taken) == 1 and taken[0].skipped == []  # none found still locked by the chunk giving it back
    assert sorted(taken[0].idle) == sorted(b.pk for b in boxes)


def test_it_releases_its_locks_when_the_chunk_fails_before_polling(
    bob: Staff, dovecot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    boxes = readers(bob, dovecot, 2)

    def database_gone() -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(polling, "_unfinished", database_gone)
    with pytest.raises(RuntimeError):
        Queue().run()

    for box in boxes:  # not locked for the chunk's lock life (2 minutes)
        lock = locks.acquire(locks.mailbox_poll_key(box.pk), ttl=60)
        assert lock is not None
        locks.release(lock)


@pytest.mark.django_db(transaction=True)
def test_two_chunks_claiming_at_once_on_postgresql_never_share_a_mailbox(bob: Staff, dovecot: Any) -> None:
    # The first claim is held open (its rows locked); the second, preferring the same mailboxes,
    # skips the locked rows and takes the others; once the first commits, none is due.
    from django.db import connection, transaction

    from mailboxes.reading import mailboxes_claim_due

    assert connection.vendor == "postgresql"
    boxes = [make_reader(bob, dovecot) for _ in range(4)]
    ids = sorted(b.pk for b in boxes)
    claimed: dict[str, list[int]] = {}
    first_holds, release_first = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                claimed["first"] = mailboxes_claim_due(limit=2, prefer=ids[:2])
                first_holds.set()
                release_first.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=first)
    holder.start()
    try:
        assert first_holds.wait(30)
        claimed["second"] = mailboxes_claim_due(limit=4, prefer=ids[:2])
    finally:
        release_first.set()
        holder.join(30)

    assert sorted(claimed["first"]) == ids[:2] and sorted(claimed["second"]) == ids[2:]
    assert mailboxes_claim_due(limit=4) == []
