"""Celery tasks of the documents app: they take ids and are safe to run twice.

The processor claims nothing up front: it reads, then writes the outcome under a row lock only if
the document is still pending, so a duplicate run (a redelivered broker message, the sweep) finds
it done. Storage errors are temporary and retried with backoff; a file that will not finish
reading within the soft time limit is recorded as failed, not retried.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

import tms.celery  # noqa: F401  (the configured app before any task is declared: tms/__init__.py)

from . import services

logger = logging.getLogger(__name__)

_MAX_RETRIES = 5


@shared_task(
    bind=True,
    name="documents.process",
    ignore_result=True,
    # A margin over the extraction's own deadline, for a single page that will not stop.
    soft_time_limit=settings.DOCUMENT_EXTRACT_SECONDS + 30,
    time_limit=settings.DOCUMENT_EXTRACT_SECONDS + 60,
)
def document_process_task(self: Any, document_id: int) -> str:
    try:
        document = services.document_process(document_id=document_id)
    except SoftTimeLimitExceeded:
        services.document_fail(document_id=document_id,
                               reason=f"reading the file took longer than {settings.DOCUMENT_EXTRACT_SECONDS} s")
        return "failed"
    except OSError as exc:
        retries = int(self.request.retries)
        if retries >= _MAX_RETRIES:
            services.document_fail(document_id=document_id, reason=f"the stored file could not be read: {exc}")
            return "failed"
        logger.warning("document %s: storage error, retry %s: %s", document_id, retries + 1, type(exc).__name__)
        raise self.retry(exc=exc, countdown=min(3600, 30 * 2**retries), max_retries=_MAX_RETRIES) from None
    return document.status if document is not None else "gone"


@shared_task(name="documents.process_stale", ignore_result=True, soft_time_limit=120, time_limit=180)
def documents_process_stale() -> int:
    """Beat entry: queue again the pending documents whose task got lost."""
    ids = services.documents_pending_ids()
    for document_id in ids:
        document_process_task.delay(document_id)
    return len(ids)


@shared_task(
    bind=True,
    name="documents.process_many",
    ignore_result=True,
    # Each file's extraction has its own deadline; this is the margin for the batch as a whole.
    soft_time_limit=settings.DOCUMENT_EXTRACT_SECONDS * 10 + 60,
    time_limit=settings.DOCUMENT_EXTRACT_SECONDS * 10 + 120,
)
def documents_process_task(self: Any, document_ids: list[int]) -> int:
    """The documents of one intake batch in one go (services.documents_process); what it leaves -
    a storage error, an unexpected error, or the rest when the batch runs out of time - goes to
    document_process_task one by one. Safe to run twice: only pending documents are touched."""
    try:
        left = services.documents_process(document_ids=document_ids)
    except SoftTimeLimitExceeded:
        left = list(document_ids)  # the processed ones are no longer pending: their tasks find them done
    for document_id in left:
        document_process_task.delay(document_id)
    return len(document_ids) - len(left)
