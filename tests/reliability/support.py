"""Shared by the reliability tests: a one-line summary printer, acme's world (one of everything, to be
attacked by charlie), a snapshot of a tenant's rows, and message generators."""

from __future__ import annotations

import email.utils
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder

from mailboxes.intake import message_process
from mailboxes.models import InboundMessage, Mailbox
from tms.accounts.models import Staff, Tenant
from tms.accounts.scoping import TenantOwned


def summary(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print one line past pytest's capture, so it shows with -q too."""
    with capsys.disabled():
        print(f"\n{line}", flush=True)


@dataclass
class World:
    """One of each of acme's objects, and the strings that identify them (none may reach charlie)."""

    tenant: Tenant
    ids: dict[str, list[str]] = field(default_factory=dict)     # model label -> public ids
    markers: set[str] = field(default_factory=set)               # emails, numbers, names, ids
    auth_token: str = ""                                          # a pending mailbox's authorization link token
    inbound: list[tuple[str, str]] = field(default_factory=list)  # (mailbox id, inbound message id)

    def all_ids(self) -> list[str]:
        return sorted({i for ids in self.ids.values() for i in ids})


def acme_world(acme: Tenant, alice: Staff, bob: Staff) -> World:
    """Acme with a mailbox each for alice and bob (one pending authorization), a customer, a contact, a
    shipment with activities, an inbound message filed on it, an outbound reply and a document."""
    from documents.models import Document
    from mailboxes.services import authorization_link
    from shipments import services as shipments
    from shipments.models import Activity, Contact, Customer, Shipment

    world = World(tenant=acme)
    box = make_box(bob, "bob.box@acme-mail.test")
    make_box(alice, "alice.box@acme-mail.test")
    pending = make_box(bob, "bob.pending@acme-mail.test", status=Mailbox.Status.PENDING_AUTHORIZATION)
    pending.authorization_nonce = uuid.uuid4().hex
    pending.save(update_fields=["authorization_nonce"])
    world.auth_token = authorization_link(pending).rstrip("/").rsplit("/", 1)[-1]
    customer = shipments.customer_create(tenant=acme, name="Acme Secret Customer Inc", email_domains=["acmecust.test"])
    shipments.contact_create(tenant=acme, email="buyer@acmecust.test", name="Acme Buyer", customer=customer)
    shipment = shipments.shipment_create(tenant=acme, sequence=424242, customer=customer,
                                         fields={"origin": "Acmeville, OH", "destination": "Roadrunner, AZ"})
    shipments.activity_note_add(shipment=shipment, actor=bob, text="acme internal note")
    raw = mail(f"Re: {shipment.number} pickup tomorrow", sender="buyer@acmecust.test",
               attachment=("BOL-acme.pdf", "application/pdf", b"%PDF-1.4\n% acme\n"))
    message = store(box, raw)
    message_process(message_id=message.pk)
    world.inbound.append((str(box.public_id), str(message.public_id)))
    if not Document.unscoped.filter(tenant=acme).exists():
        raise AssertionError("the world needs a document: the intake stored none")
    for model in tenant_models():
        rows = model.unscoped.filter(tenant=acme)
        world.ids[model._meta.label] = [str(pk) for pk in rows.values_list("public_id", flat=True)]
    world.markers |= {alice.email, bob.email, box.email_address, pending.email_address, "buyer@acmecust.test",
                      shipment.number, "Acme Secret Customer Inc", "acme internal note", "Acmeville",
                      world.auth_token}
    world.markers |= set(world.all_ids())
    assert Shipment.unscoped.filter(tenant=acme).count() >= 1
    assert Activity.unscoped.filter(tenant=acme).count() >= 2
    assert Contact.unscoped.filter(tenant=acme).count() >= 1 and Customer.unscoped.filter(tenant=acme).exists()
    return world


def make_box(staff: Staff, address: str, **fields: Any) -> Mailbox:
    from tests.factories import make_mailbox

    return make_mailbox(staff, address, **fields)


def tenant_models() -> list[Any]:
    return [m for m in apps.get_models() if issubclass(m, TenantOwned) and not m._meta.abstract]


class _Encoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, bytes | memoryview):
            return bytes(o).hex()
        return super().default(o)


def snapshot(tenant: Tenant) -> dict[str, str]:
    """Every row the tenant owns (all TenantOwned models, its staff's users), as JSON text per model."""
    from django.contrib.auth import get_user_model

    out: dict[str, str] = {}
    encoder = _Encoder()
    for model in tenant_models():
        rows = list(model.unscoped.filter(tenant=tenant).order_by("pk").values())
        out[model._meta.label] = encoder.encode(rows)
    users = get_user_model().objects.filter(pk__in=Staff.unscoped.filter(tenant=tenant).values("user_id"))
    out["users"] = encoder.encode(list(users.order_by("pk").values()))
    out["tenant"] = encoder.encode(list(Tenant.objects.filter(pk=tenant.pk).values()))
    return out


def mail(subject: str, *, sender: str = "customer@shipper.test", to: str = "dispatch@example.test",
         body: str = "Hello\n", message_id: str | None = None,
         attachment: tuple[str, str, bytes] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@shipper.test>"
    msg.set_content(body)
    if attachment:
        name, ctype, data = attachment
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return bytes(msg)


def store(mailbox: Mailbox, raw: bytes) -> InboundMessage:
    """An InboundMessage row as the reader stores it (no server involved)."""
    from mailboxes.reading import _Meta

    meta = _Meta.from_fetch(uuid.uuid4().int % 10**9, {b"BODY[HEADER]": raw.split(b"\n\n", 1)[0] + b"\n\n",
                                                       b"RFC822.SIZE": len(raw)})
    return InboundMessage.objects.for_tenant(mailbox.tenant).create(
        mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=meta.uid,
        message_id=meta.message_id or f"<{uuid.uuid4().hex}@synth>", raw=raw, size=len(raw),
        headers=meta.headers, subject=meta.subject, from_address=meta.from_address, sent_date=meta.sent_date,
    )


# Quote / pickup / operations / other mail that the real classifier and intake act on.
SHAPES = (
    ("Quote request {n}: Dallas, TX to Atlanta, GA", "Please quote a 53' dry van, 40,000 lbs, pickup Monday.\n"),
    ("Pickup request {n}", "Please pick up 12 pallets at 100 Main St, Columbus, OH 43215 tomorrow 8am.\n"),
    ("Lunch on Friday? ({n})", "Are we still on for lunch?\n"),
)


def ingest_message(n: int, domain: str = "shipper.test") -> tuple[str, bytes]:
    """Message n of a generated ingest: its Message-ID and bytes."""
    subject, body = SHAPES[n % len(SHAPES)]
    message_id = f"<ingest-{n}-{uuid.uuid4().hex[:8]}@{domain}>"
    return message_id, mail(subject.format(n=n), body=body, message_id=message_id,
                            sender=f"customer{n % 50}@{domain}")
