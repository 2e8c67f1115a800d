"""Celery tasks for reading mailboxes.

The beat (poll_due_mailboxes) counts the due mailboxes and queues one chunk task
(poll_due_chunk) per polling.CHUNK of them; each chunk claims its mailboxes when it runs, those
whose IMAP connection its worker process keeps first (polling.py explains why and what bounds a
slow mailbox). poll_mailbox is one full pass over one mailbox, by id: a chunk hands it the
mailboxes with much to do, and other code queues it (a message to retry, the demo).
Safe to run twice: the claim and the mailbox's lock (reading.mailbox_poll) refuse a second poll.
Errors are not retried by Celery: the mailbox row carries the backoff (next_poll_at).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from celery import shared_task
from django.conf import settings

from mailboxes import polling, reading

logger = logging.getLogger(__name__)


@shared_task(name="mailboxes.poll_due_mailboxes", ignore_result=True, soft_time_limit=60, time_limit=90)
def poll_due_mailboxes() -> int:
    """Beat entry: queue enough chunk tasks for every due mailbox; return how many are due.
    (One that falls due after the count and finds every chunk full is the first of the next beat.)"""
    due = reading.mailboxes_due_count()
    if due:
        chunks = math.ceil(due / polling.CHUNK)
        for _ in range(chunks):
            poll_due_chunk.delay()
        logger.info("%s mailboxes due: queued %s poll chunks", due, chunks)
    return due


@shared_task(
    name="mailboxes.poll_due_chunk",
    ignore_result=True,
    soft_time_limit=polling.SOFT_TIME_LIMIT,
    time_limit=polling.TIME_LIMIT,
)
def poll_due_chunk() -> dict[str, int]:
    """Claim and poll up to polling.CHUNK due mailboxes."""
    return polling.mailboxes_poll_chunk(hand_off=poll_mailbox.delay, more=poll_due_chunk.delay).as_json()


@shared_task(
    name="mailboxes.poll_mailbox",
    ignore_result=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def poll_mailbox(mailbox_id: int) -> dict[str, Any]:
    """One pass over one mailbox (the same code as `manage.py mailbox poll ID --once`)."""
    result = reading.mailbox_poll(mailbox_id=mailbox_id)
    return {**result.as_json(), "skipped": result.skipped, "error": result.error}
