"""The shipments intake handler (settings.MAILBOX_INTAKE_HANDLERS; protocol in mailboxes/intake.py).

Thin: the classification comes from the context (computed once for all handlers), the work is
services.message_intake, and what it did goes back to mailboxes/ as plain data. Later handlers
(documents) find the shipments the message was filed on in their context's results:
data["shipment_ids"] (public ids) and data["shipments"] (numbers).
"""

from __future__ import annotations

from typing import Any

from mailboxes.intake import CATEGORIES, IntakeContext, IntakeResult
from mailboxes.models import InboundMessage

from . import services
from .excerpt import message_excerpt
from .models import Shipment

PREPARED = f"{__name__}.prepare"
# Tables an import makes grow whose lookups start with the tenant (documents.matching's BOL/PO/PRO
# numbers): a big pass refreshes their statistics as it goes (mailboxes.intake.intake_grown_models).
GROWS = (Shipment,)


def prepare(raw: bytes, classification: Any) -> str:
    """Ahead, in an intake worker (mailboxes/prepare.py): the excerpt a new shipment or an
    activity of this message would show (a second parse of the message, pure)."""
    return message_excerpt(raw)


def handle(message: InboundMessage, context: IntakeContext) -> IntakeResult:
    verdict = context.classification
    excerpt = context.prepared.get(PREPARED)
    outcome = services.message_intake(message=message, classification=verdict, batch=context.batch,
                                      excerpt=excerpt if isinstance(excerpt, str) else None)
    category = outcome.category if outcome.category in CATEGORIES else "other"
    records = {
        "shipment": len(outcome.created),
        "activity": len(outcome.activities),
        "contact": int(outcome.new_contact),
    }
    reason = outcome.reason
    if outcome.created:
        reason = f"created {', '.join(s.number for s in outcome.created)}; {reason}"
    elif outcome.touched:
        reason = f"filed on {', '.join(outcome.touched)}; {reason}"
    if outcome.unknown_refs:
        reason = f"{reason}; unknown shipment numbers: {', '.join(outcome.unknown_refs)}"
    return IntakeResult(
        category=category,
        reason=reason.strip("; ")[:1000],
        records={kind: count for kind, count in records.items() if count},
        data={
            "created": [str(s.public_id) for s in outcome.created],
            "shipments": outcome.touched,
            "shipment_ids": outcome.touched_ids,
            "thread": outcome.thread,
            "unknown_refs": outcome.unknown_refs,
            "contact": str(outcome.contact.public_id) if outcome.contact else None,
        },
    )
