"""Celery tasks for sending: they take ids, re-read the rows and are safe to run twice.

Delivery is claimed with a conditional UPDATE in sending.message_deliver, so a duplicate task (a
redelivered broker message, the periodic sweep) finds nothing to do. Throttled and temporarily
failed messages stay QUEUED with next_attempt_at and are re-enqueued with a countdown; the
periodic sweep picks up any that got lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from django.conf import settings

from mailboxes import sending, webhooks

logger = logging.getLogger(__name__)


@shared_task(
    name="mailboxes.outbound_deliver",
    ignore_result=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def outbound_deliver(outbound_id: int) -> str:
    result = sending.message_deliver(outbound_id=outbound_id)
    if result.status == "queued" and result.retry_in is not None:
        outbound_deliver.apply_async((outbound_id,), countdown=max(1, int(result.retry_in + 0.999)))
    return str(result.status)


@shared_task(
    name="mailboxes.mailbox_deliver_queued",
    ignore_result=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def mailbox_deliver_queued(mailbox_id: int) -> int:
    """Everything due for one mailbox, 100 messages per SMTP connection, until nothing is due (a
    messages_queue() batch). At most MAX_PASSES passes and no new pass after PASS_BUDGET seconds:
    the soft time limit must never stop a pass between an SMTP submission and the UPDATE that marks
    it SENT (the recovery could then send it again). The task queues itself again for the rest."""
    delivered = 0
    waits: list[float] = []
    began = time.monotonic()
    for _ in range(MAX_PASSES):
        results = sending.mailbox_deliver_queued(mailbox_id=mailbox_id)
        if not results:
            break
        delivered += len(results)
        waits += [r.retry_in for r in results.values() if r.status == "queued" and r.retry_in is not None]
        if time.monotonic() - began > PASS_BUDGET:
            break
    if results:  # stopped by the budget or MAX_PASSES with more perhaps due: a task of its own, now
        mailbox_deliver_queued.delay(mailbox_id)
    if waits:  # throttled or temporarily failed: come back when the first one is due
        mailbox_deliver_queued.apply_async((mailbox_id,), countdown=max(1, int(min(waits) + 0.999)))
    return delivered


MAX_PASSES = 50
# A pass is 100 messages on one connection; one that starts before this still ends well within the
# soft time limit unless its SMTP server takes over 2.5 s a message.
PASS_BUDGET = settings.CELERY_TASK_SOFT_TIME_LIMIT / 2


@shared_task(name="mailboxes.outbound_sweep", ignore_result=True, soft_time_limit=240, time_limit=300)
def outbound_sweep() -> dict[str, Any]:
    """Beat entry: recover messages left SENDING by a dead worker, enqueue due ones, file Sent copies."""
    recovered = sending.outbound_recover_stale()
    due = sending.outbound_due_ids()
    for outbound_id in due:
        outbound_deliver.delay(outbound_id)
    filed = sending.sent_copies_pending_file()
    if due or any(recovered.values()) or filed:
        logger.info("outbound sweep: %d due, recovered %s, %d Sent copies filed", len(due), recovered, filed)
    return {"due": len(due), "recovered": recovered, "sent_copies_filed": filed}


@shared_task(
    bind=True,
    name="mailboxes.webhook_deliver",
    ignore_result=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def webhook_deliver(self: Any, outbound_id: int, event: str) -> bool:
    try:
        return webhooks.webhook_deliver(outbound_id=outbound_id, event=event)
    except webhooks.WebhookError as exc:
        if not exc.temporary:
            logger.info("webhook for outbound %s refused: %s", outbound_id, exc.message)
            return False
        countdown = min(30 * 2 ** self.request.retries, 6 * 3600)
        logger.info("webhook for outbound %s failed (%s); retry in %s s", outbound_id, exc.message, countdown)
        raise self.retry(countdown=countdown, exc=exc) from None
