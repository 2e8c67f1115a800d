"""Scheduling and locking of polls: beat claims due mailboxes, one poll per mailbox at a time."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from mailboxes import locks, polling
from mailboxes.models import Lease, Mailbox
from mailboxes.reading import PollResult, backoff_seconds, mailbox_poll, mailboxes_claim_due
from mailboxes.tasks import poll as poll_tasks
from tests.mailboxes.reading_support import (  # noqa: F401 - fixtures
    LOG,
    append,
    handler_log,
    make_reader,
    message,
    reading_settings,
    stored,
)
from tms.accounts.models import Staff


def test_it_schedules_the_due_poll_in_beat() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["mailboxes-poll-due"]
    assert entry["task"] == poll_tasks.poll_due_mailboxes.name
    assert entry["schedule"] == float(django_settings.MAILBOX_POLL_INTERVAL)


@pytest.mark.django_db
@pytest.mark.usefixtures("reading_settings")
def test_it_queues_chunks_that_claim_each_due_active_reading_mailbox_once(
    bob: Staff, dovecot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[tuple[()]] = []
    monkeypatch.setattr(poll_tasks.poll_due_chunk, "delay", lambda: queued.append(()))
    monkeypatch.setattr(polling, "CHUNK", 1)
    now = timezone.now()
    due = make_reader(bob, dovecot, address="due@example.test")
    overdue = make_reader(bob, dovecot, address="overdue@example.test", next_poll_at=now - timedelta(hours=1))
    make_reader(bob, dovecot, address="later@example.test", next_poll_at=now + timedelta(hours=1))
    make_reader(bob, dovecot, address="sender@example.test", permission=Mailbox.Permission.SEND)
    make_reader(bob, dovecot, address="revoked@example.test", status=Mailbox.Status.NEEDS_REAUTHORIZATION)
    make_reader(bob, dovecot, address="off@example.test", status=Mailbox.Status.DISABLED)

    assert poll_tasks.poll_due_mailboxes() == 2
    assert len(queued) == 2  # one chunk per CHUNK due mailboxes

    # Each chunk claims when it runs (never polled first, then the longest overdue), each once.
    assert mailboxes_claim_due(now=now, limit=1) == [due.pk]
    assert mailboxes_claim_due(now=now, limit=1) == [overdue.pk]
    assert mailboxes_claim_due(now=now, limit=1) == []
    # Claimed: the next beat queues nothing for them before their time.
    assert poll_tasks.poll_due_mailboxes() == 0 and len(queued) == 2
    assert sorted(mailboxes_claim_due(now=now + timedelta(seconds=django_settings.MAILBOX_POLL_INTERVAL))) == sorted(
        [due.pk, overdue.pk]
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("reading_settings")
def test_it_polls_nothing_for_mailboxes_that_must_not_be_read(bob: Staff, dovecot: Any) -> None:
    sender = make_reader(bob, dovecot, permission=Mailbox.Permission.SEND)
    revoked = make_reader(bob, dovecot, status=Mailbox.Status.NEEDS_REAUTHORIZATION)
    pending = make_reader(bob, dovecot, status=Mailbox.Status.PENDING_AUTHORIZATION)

    assert mailbox_poll(mailbox_id=sender.pk).skipped == "not reading"
    assert mailbox_poll(mailbox_id=revoked.pk, explicit=True).skipped == "needs re-authorization"
    assert mailbox_poll(mailbox_id=pending.pk, explicit=True).skipped.startswith("status")
    assert mailbox_poll(mailbox_id=10**9).skipped == "gone"


def test_it_backs_off_exponentially_up_to_a_cap(settings: Any) -> None:
    settings.MAILBOX_POLL_INTERVAL = 60
    settings.MAILBOX_POLL_MAX_BACKOFF = 3600
    assert [backoff_seconds(n) for n in (1, 2, 3, 6, 7, 50)] == [60, 120, 240, 1920, 3600, 3600]


@pytest.mark.django_db
def test_it_hands_a_database_lock_to_one_holder_until_released_or_expired(settings: Any) -> None:
    settings.REDIS_URL = ""
    first = locks.acquire("k", ttl=60)
    assert first is not None
    assert locks.acquire("k", ttl=60) is None
    locks.release(first)
    second = locks.acquire("k", ttl=60)
    assert second is not None
    Lease.objects.filter(key="k").update(expires_at=timezone.now() - timedelta(seconds=1))  # holder crashed
    third = locks.acquire("k", ttl=60)
    assert third is not None
    assert not locks.extend(second, ttl=60)  # the old holder lost it
    locks.release(second)  # and cannot release the new holder's lock
    assert locks.acquire("k", ttl=60) is None
    locks.release(third)


def test_it_hands_a_redis_lock_to_one_holder(settings: Any, redis_server: Any) -> None:
    settings.REDIS_URL = redis_server.url
    first = locks.acquire("r", ttl=60)
    assert first is not None and locks.acquire("r", ttl=60) is None
    assert locks.extend(first, ttl=60)
    locks.release(first)
    again = locks.acquire("r", ttl=60)
    assert again is not None
    locks.release(again)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("backend", ["database", "redis"])
@pytest.mark.usefixtures("reading_settings", "handler_log")
def test_it_refuses_a_second_poll_of_a_mailbox_being_polled(
    bob: Staff, dovecot: Any, settings: Any, redis_server: Any, backend: str
) -> None:
    if backend == "redis":
        settings.REDIS_URL = redis_server.url
    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("quote slow"))
    LOG.block.clear()  # the first poll stops inside the handler
    results: dict[str, PollResult] = {}

    def first_poll() -> None:
        try:
            results["first"] = mailbox_poll(mailbox_id=mailbox.pk)
        finally:
            connection.close()

    worker = threading.Thread(target=first_poll)
    worker.start()
    try:
        assert LOG.blocked.wait(20), "the first poll never reached the handler"
        second = mailbox_poll(mailbox_id=mailbox.pk)
        assert second.skipped == "locked"
        assert second.as_json()["fetched"] == 0
    finally:
        LOG.block.set()
        worker.join(30)
    assert results["first"].new == 1 and results["first"].quote == 1
    assert len(stored(mailbox)) == 1
    after = mailbox_poll(mailbox_id=mailbox.pk)
    assert after.skipped == "" and after.fetched == 0
