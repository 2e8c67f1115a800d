"""Helpers for the shipments tests: stored inbound messages and shipments made as the app makes them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

from django.utils import timezone

from mailboxes.models import InboundMessage, Mailbox
from shipments import services
from shipments.models import Shipment
from tms.accounts.models import Tenant

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "messages"


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def build_mail(*, sender: str, to: str, subject: str, body: str, message_id: str | None = None,
               in_reply_to: str | None = None, references: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(timezone.now())
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@customer.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(body)
    return bytes(msg)


def store_inbound(mailbox: Mailbox, raw: bytes, *, uid: int | None = None) -> InboundMessage:
    """An InboundMessage row as the reader stores it (no server involved)."""
    from email import message_from_bytes

    parsed = message_from_bytes(raw)
    return InboundMessage.objects.for_tenant(mailbox.tenant).create(
        mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=uid or (uuid.uuid4().int % 10**9),
        message_id=str(parsed.get("Message-ID") or f"<{uuid.uuid4().hex}@synth>").strip(),
        raw=raw, size=len(raw), subject=str(parsed.get("Subject") or ""),
        from_address=str(parsed.get("From") or ""),
    )


@dataclass
class Verdict:
    """The shape of classifier.Classification, for tests of the services alone."""

    category: str
    subject: str = ""
    from_addr: str | None = None
    shipment_refs: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    reason: str = ""


def verdict_for(message: InboundMessage, category: str, **kwargs: Any) -> Verdict:
    _, address = parseaddr(message.from_address)
    kwargs.setdefault("subject", message.subject)
    kwargs.setdefault("from_addr", address)
    return Verdict(category=category, **kwargs)


def make_shipment(tenant: Tenant, *, sequence: int | None = None, **kwargs: Any) -> Shipment:
    return services.shipment_create(tenant=tenant, sequence=sequence, **kwargs)
