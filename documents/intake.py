"""The documents intake handler (settings.MAILBOX_INTAKE_HANDLERS, after the shipments handler;
protocol in mailboxes/intake.py).

Thin: the attachments come from the shared classification, the shipments the earlier handler filed
the message on come from the context, and services.documents_record_from_message records them and
queues the processor after the commit. A bad attachment never makes this raise.
"""

from __future__ import annotations

from mailboxes.intake import IntakeContext, IntakeResult
from mailboxes.models import InboundMessage

from . import services


def _filed_on(context: IntakeContext) -> list[str]:
    """Shipment numbers the earlier handlers report in their data under "shipments"."""
    numbers: list[str] = []
    for result in context.results:
        value = result.data.get("shipments") if isinstance(result.data, dict) else None
        if isinstance(value, list | tuple):
            numbers += [str(v) for v in value if v]
    return numbers


def handle(message: InboundMessage, context: IntakeContext) -> IntakeResult | None:
    verdict = context.classification
    attachments = tuple(getattr(verdict, "attachments", None) or ())
    if not attachments:
        return None
    hints = services.message_hints(refs=getattr(verdict, "shipment_refs", None) or (), shipments=_filed_on(context))
    outcome = services.documents_record_from_message(
        message=message, attachments=attachments, hints=hints, batch=context.batch)
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
