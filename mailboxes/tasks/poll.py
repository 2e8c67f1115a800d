"""Celery tasks for reading mailboxes: beat enqueues one poll per due mailbox, by id.

Each mailbox is its own task, so one slow or broken mailbox never delays the others; the lock
in reading.mailbox_poll makes a second run of the same mailbox a no-op (safe to run twice).
Errors are not retried by Celery: the mailbox row carries the backoff (next_poll_at).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from mailboxes import reading

logger = logging.getLogger(__name__)


@shared_task(name="mailboxes.poll_due_mailboxes", ignore_result=True, soft_time_limit=60, time_limit=90)
def poll_due_mailboxes() -> int:
    """Beat entry: claim every due mailbox and queue its poll."""
    ids = reading.mailboxes_claim_due()
    for mailbox_id in ids:
        poll_mailbox.delay(mailbox_id)
    if ids:
        logger.info("queued polls for %s mailboxes", len(ids))
    return len(ids)


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
