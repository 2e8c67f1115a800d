"""The documents intake handler (settings.MAILBOX_INTAKE_HANDLERS, after the shipments handler;
protocol in mailboxes/intake.py).

Thin: the attachments come from the shared classification, the shipments the earlier handler filed
the message on come from the context, and services.documents_record_from_message records them -
finished when their text was read ahead (prepare), else pending with the processor queued after
the commit. A bad attachment never makes this raise.
"""

from __future__ import annotations

from typing import Any

from mailboxes.intake import IntakeContext, IntakeResult
from mailboxes.models import InboundMessage
from tms.tasking import tasks_run_here

from . import services

PREPARED = f"{__name__}.prepare"


def prepare(raw: bytes, classification: Any) -> dict[str, Any] | None:
    """Ahead, in an intake worker (mailboxes/prepare.py): the text of the attachments, for handle()
    to record their documents finished, when the processor would run in this process anyway
    (`mailbox poll --once`); with a Celery worker elsewhere reading the file, the intake's
    transaction stays short and this would be wasted. None for a message without attachments
    (most of them): handle() records nothing for it."""
    attachments = tuple(getattr(classification, "attachments", None) or ())
    if not attachments or not tasks_run_here():
        return None
    return services.documents_extract_ahead(attachments=attachments)


def _filed_on(context: IntakeContext) -> list[str]:
    """Shipment numbers the earlier handlers report in their data under "shipments"."""
    numbers: list[str] = []
    for result in context.results:
        value = result.data.get("shipments") if isinstance(result.data, dict) else None
        if isinstance(value, list | tuple):
            numbers += [str(v) for v in value if v]
    return numbers


def handle(message: InboundMessage, context: IntakeContext) -> IntakeResult | None:
    services.documents_flush_last(batch=context.batch)
    verdict = context.classification
    attachments = tuple(getattr(verdict, "attachments", None) or ())
    if not attachments:
        return None
    hints = services.message_hints(refs=getattr(verdict, "shipment_refs", None) or (), shipments=_filed_on(context))
    outcome = services.documents_record_from_message(
        message=message, attachments=attachments, hints=hints, batch=context.batch,
        extracted=context.prepared.get(PREPARED))
    if not outcome.created:
        return None
    failed = [d for d in outcome.created if d.status == d.Status.FAILED]
    return IntakeResult(
        records={"document": len(outcome.created)},
        data={
            "documents": [str(d.public_id) for d in outcome.created],
            "failed": {str(d.public_id): d.error for d in failed},
            "skipped": outcome.skipped,
        },
    )
