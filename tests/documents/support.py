"""Helpers for the documents tests: messages with attachments, stored and run through the real
intake (shipments handler, then documents handler) with the processor executed eagerly."""

from __future__ import annotations

import email.utils
import json
import uuid
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailboxes.intake import message_process
from mailboxes.models import InboundMessage, Mailbox
from shipments import services as shipment_services
from shipments.models import Shipment
from tms.accounts.models import Tenant

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def corpus_labels() -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in (CORPUS / "labels.jsonl").read_text().splitlines() if line.strip()]
    return {row["file"]: row for row in rows}


def corpus(name: str) -> bytes:
    return (CORPUS / "messages" / name).read_bytes()


def mail(subject: str, body: str = "Please see attached.\n", *,
         attachments: Iterable[tuple[str, str, bytes]] = (), sender: str = "ops@carrier.test",
         inline_images: Iterable[tuple[str, bytes]] = ()) -> bytes:
    """A message with (filename, content type, bytes) attachments and, optionally, an HTML body
    showing inline images by Content-ID (a signature logo)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "dispatch@acme.test"
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="carrier.test")
    msg.set_content(body)
    images = list(inline_images)
    if images:
        html = body.replace("\n", "<br>") + "".join(f'<img src="cid:logo{i}">' for i in range(len(images)))
        msg.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
        html_part = next(p for p in msg.walk() if p.get_content_type() == "text/html")
        for index, (name, data) in enumerate(images):
            html_part.add_related(  # type: ignore[attr-defined]
                data, maintype="image", subtype="png", cid=f"<logo{index}>", filename=name, disposition="inline")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return bytes(msg)


def store(mailbox: Mailbox, raw: bytes) -> InboundMessage:
    """An InboundMessage row as the reader stores it (no server involved)."""
    from email import message_from_bytes

    parsed = message_from_bytes(raw)
    return InboundMessage.objects.for_tenant(mailbox.tenant).create(
        mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=uuid.uuid4().int % 10**9,
        message_id=str(parsed.get("Message-ID") or f"<{uuid.uuid4().hex}@synth>").strip(),
        raw=raw, size=len(raw), subject=str(parsed.get("Subject") or ""),
        from_address=str(parsed.get("From") or ""),
    )


def receive(mailbox: Mailbox, raw: bytes, capture: Any) -> InboundMessage:
    """Store the message and run the intake as the reader does; the tasks queued on commit run
    (eagerly) when the captured callbacks execute."""
    message = store(mailbox, raw)
    with capture(execute=True):
        message_process(message_id=message.pk)
    message.refresh_from_db()
    return message


def shipment(tenant: Tenant, sequence: int, **fields: Any) -> Shipment:
    return shipment_services.shipment_create(tenant=tenant, sequence=sequence, fields=fields)
