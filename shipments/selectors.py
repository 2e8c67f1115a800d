"""Reads of shipments, activities, customers and contacts: always for one tenant, in a fixed
number of queries whatever the number of rows (select_related / prefetch_related; the raw bytes
of messages are never loaded for a page)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from django.db.models import Count, Prefetch, Q, QuerySet
from django.db.models.functions import Lower

from mailboxes.models import InboundMessage
from tms.accounts.models import Staff, Tenant
from tms.rows import Row

from .models import Activity, Contact, Customer, CustomerDomain, FiledMessage, Shipment, Status, place

# Columns of a message worth showing on a page (never `raw`, which may be megabytes).
INBOUND_SHOWN = ("message_id", "subject", "from_address", "sent_date", "received_at", "category")
OUTBOUND_SHOWN = ("message_id", "subject", "from_address", "recipients", "status", "created_at", "sent_at")


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


# ----------------------------------------------------------------------------- shipments


@dataclass(frozen=True)
class ShipmentFilters:
    mine: bool = False
    status: str = ""
    customer: str = ""  # a customer's public id
    q: str = ""  # a number or a city


def shipment_list(*, tenant: Tenant, staff: Staff | None = None, filters: ShipmentFilters | None = None
                  ) -> QuerySet[Shipment]:
    """The tenant's shipments, newest first, narrowed by the filters (unknown values match none)."""
    filters = filters or ShipmentFilters()
    qs = (
        Shipment.objects.for_tenant(tenant)
        .select_related("customer", "assigned_to")
        .order_by("-created_at", "-id")
    )
    if filters.mine and staff is not None:
        qs = qs.filter(assigned_to=staff)
    if filters.status:
        qs = qs.filter(status=filters.status) if filters.status in Status.values else qs.none()
    if filters.customer:
        key = as_uuid(filters.customer)
        qs = qs.filter(customer__public_id=key) if key else qs.none()
    q = filters.q.replace("\x00", "").strip()
    if q:
        qs = qs.filter(
            Q(number__icontains=q) | Q(origin_city__icontains=q) | Q(destination_city__icontains=q)
            | Q(po_number__iexact=q) | Q(bol_number__iexact=q) | Q(pro_number__iexact=q)
        )
    return qs


# What the shipment list page shows (templates/shipments/shipment_list.html), read as plain values:
# no model instances for 50 shipments, their customers and assignees (the page's query took 1.6 ms
# with them, 0.7 ms without; the columns not shown, ~20 of them, are not read at all).
SHIPMENT_LIST_VALUES = (
    "public_id", "number", "status", "pickup_date",
    "origin_city", "origin_state", "origin_postal_code",
    "destination_city", "destination_state", "destination_postal_code",
    "customer__public_id", "customer__name", "assigned_to__name",
)


_STATUS_LABELS = dict(Status.choices)


def shipment_list_values(qs: QuerySet[Shipment]) -> QuerySet[Any]:
    """shipment_list()'s shipments as the values the list page shows (rows made by shipment_list_row)."""
    return qs.select_related(None).values(*SHIPMENT_LIST_VALUES)


def shipment_list_row(values: dict[str, Any]) -> Row:
    """One row of the list page (a Row: the template engine's fastest lookup)."""
    return Row({
        "public_id": values["public_id"], "number": values["number"], "status": values["status"],
        "status_label": _STATUS_LABELS.get(values["status"], values["status"]), "pickup_date": values["pickup_date"],
        "origin": place(values["origin_city"], values["origin_state"], values["origin_postal_code"]),
        "destination": place(values["destination_city"], values["destination_state"],
                             values["destination_postal_code"]),
        "customer_public_id": values["customer__public_id"], "customer_name": values["customer__name"] or "",
        "assigned_to_name": values["assigned_to__name"] or "",
    })


def shipment_get(*, tenant: Tenant, public_id: Any) -> Shipment | None:
    key = as_uuid(public_id)
    if key is None:
        return None
    found = (
        Shipment.objects.for_tenant(tenant)
        .select_related("customer", "contact", "assigned_to", "source_message", "tenant")
        .defer("source_message__raw", "source_message__headers")
        .filter(public_id=key)
        .first()
    )
    return cast(Shipment | None, found)


def shipment_by_number(*, tenant: Tenant, number: str) -> Shipment | None:
    return cast(Shipment | None, Shipment.objects.for_tenant(tenant).filter(number__iexact=number.strip()).first())


def shipment_timeline(*, shipment: Shipment) -> list[Activity]:
    """Everything that happened on a shipment, oldest first: mail in and out, notes, documents."""
    return list(
        Activity.objects.for_tenant(shipment.tenant)
        .filter(shipment=shipment)
        .select_related("actor", "inbound_message", "outbound_message")
        .only(
            "public_id", "kind", "text", "created_at", "shipment_id", "tenant_id",
            "actor__name", "actor__email",
            *(f"inbound_message__{name}" for name in INBOUND_SHOWN),
            *(f"outbound_message__{name}" for name in OUTBOUND_SHOWN),
        )
        .order_by("created_at", "id")
    )


def activity_list(*, tenant: Tenant, shipment: str = "", kind: str = "") -> QuerySet[Activity]:
    qs = Activity.objects.for_tenant(tenant).select_related("shipment", "actor", "inbound_message",
                                                            "outbound_message")
    qs = qs.defer("inbound_message__raw", "inbound_message__headers", "outbound_message__raw")
    if shipment:
        key = as_uuid(shipment)
        qs = qs.filter(shipment__public_id=key) if key else qs.none()
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-created_at", "-id")


@dataclass(frozen=True)
class ReplyDefaults:
    to: str
    subject: str
    in_reply_to: str | None
    references: list[str]


def reply_defaults(*, shipment: Shipment, timeline: list[Activity]) -> ReplyDefaults:
    """Whom a reply goes to and how it threads: the latest mail received on the shipment (else the
    contact), subject "Re: ..." and In-Reply-To/References pointing at that mail."""
    last_in = next(
        (a.inbound_message for a in reversed(timeline) if a.kind == Activity.Kind.EMAIL_IN and a.inbound_message),
        None,
    )
    last_out = next(
        (a.outbound_message for a in reversed(timeline) if a.kind == Activity.Kind.EMAIL_OUT and a.outbound_message),
        None,
    )
    to = shipment.contact.email if shipment.contact else ""
    subject = f"Shipment {shipment.number}"
    parent: str | None = None
    references: list[str] = []
    if last_in is not None:
        from email.utils import parseaddr

        to = parseaddr(last_in.from_address)[1] or to
        subject = last_in.subject or subject
        parent = last_in.message_id
    elif last_out is not None:
        to = ", ".join(last_out.recipients or []) or to
        subject = last_out.subject or subject
        parent = last_out.message_id
    if parent:
        references = [parent]
    if subject and not subject.lower().startswith("re:") and parent:
        subject = f"Re: {subject}"
    return ReplyDefaults(to=to, subject=subject[:300], in_reply_to=parent, references=references)


def thread_references(*, shipment: Shipment, parent_message_id: str) -> list[str]:
    """The References of a reply: the ids this shipment's mail already carries, then the parent."""
    ids: list[str] = []
    for row in (
        Activity.objects.for_tenant(shipment.tenant).filter(shipment=shipment)
        .filter(Q(inbound_message__isnull=False) | Q(outbound_message__isnull=False))
        .values_list("inbound_message__message_id", "outbound_message__message_id")
        .order_by("created_at", "id")
    ):
        ids += [i for i in row if i and i not in ids]
    if parent_message_id in ids:
        ids.remove(parent_message_id)
    # RFC 5322 3.6.4: the parent's id last; keep the header bounded (first one + most recent).
    ids = (ids[:1] + ids[-8:]) if len(ids) > 9 else ids
    return [*dict.fromkeys(ids), parent_message_id] if parent_message_id else ids


# ----------------------------------------------------------------------------- customers and contacts


def customer_list(*, tenant: Tenant, q: str = "") -> QuerySet[Customer]:
    q = q.replace("\x00", "")
    qs = (
        Customer.objects.for_tenant(tenant)
        .prefetch_related(Prefetch("domains", queryset=CustomerDomain.objects.order_by("domain")))
        .annotate(shipment_count=Count("shipments", distinct=True))
        .order_by(Lower("name"), "id")
    )
    if q.strip():
        qs = qs.filter(Q(name__icontains=q.strip()) | Q(domains__domain__icontains=q.strip())).distinct()
    return cast(QuerySet[Customer], qs)


def customer_choices(*, tenant: Tenant) -> list[tuple[str, str]]:
    """(public id, name) of the tenant's customers, by name: the shipment list's filter (one plain
    query; customer_list's shipment counts and domains are not needed there)."""
    rows = Customer.objects.for_tenant(tenant).order_by(Lower("name"), "id").values_list("public_id", "name")
    return [(str(public_id), name) for public_id, name in rows]


def customer_get(*, tenant: Tenant, public_id: Any) -> Customer | None:
    key = as_uuid(public_id)
    if key is None:
        return None
    qs = Customer.objects.for_tenant(tenant).prefetch_related(
        Prefetch("domains", queryset=CustomerDomain.objects.order_by("domain"))
    )
    return cast(Customer | None, qs.filter(public_id=key).first())


def customer_shipments(*, customer: Customer) -> QuerySet[Shipment]:
    return shipment_list(tenant=customer.tenant).filter(customer=customer)


def customer_mail(*, customer: Customer) -> QuerySet[FiledMessage]:
    """The customer's archived mail, newest first (raw bytes not loaded)."""
    return (
        FiledMessage.objects.for_tenant(customer.tenant)
        .filter(customer=customer)
        .select_related("contact", "inbound_message")
        .only("public_id", "category", "created_at", "tenant_id", "contact__name", "contact__email",
              *(f"inbound_message__{name}" for name in INBOUND_SHOWN))
        .order_by("-created_at", "-id")
    )


def customer_contacts(*, customer: Customer) -> QuerySet[Contact]:
    return Contact.objects.for_tenant(customer.tenant).filter(customer=customer).order_by("name", "email")


def contact_list(*, tenant: Tenant, customer: str = "", q: str = "") -> QuerySet[Contact]:
    q = q.replace("\x00", "")
    qs = Contact.objects.for_tenant(tenant).select_related("customer").order_by(Lower("email"), "id")
    if customer:
        key = as_uuid(customer)
        qs = qs.filter(customer__public_id=key) if key else qs.none()
    if q.strip():
        qs = qs.filter(Q(email__icontains=q.strip()) | Q(name__icontains=q.strip()))
    return qs


def contact_by_email(*, tenant: Tenant, email: str) -> Contact | None:
    """The tenant's contact with this address, case-insensitively (the unique index's expression)."""
    qs = Contact.objects.for_tenant(tenant).annotate(email_lower=Lower("email"))
    return cast(Contact | None, qs.filter(email_lower=email.strip().lower()).first())


def contact_is_known(*, tenant: Tenant, address: str) -> bool:
    """For settings.MAILBOX_KNOWN_CONTACT_CHECKER: a contact or staff member of the company, or
    someone it has received mail from (the mailboxes default)."""
    if contact_by_email(tenant=tenant, email=address) is not None:
        return True
    from mailboxes.sending import known_contact_default

    return known_contact_default(tenant=tenant, address=address)


def staff_choices(*, tenant: Tenant) -> QuerySet[Staff]:
    return Staff.objects.for_tenant(tenant).order_by("name")


def inbound_message_get(*, tenant: Tenant, public_id: Any) -> InboundMessage | None:
    key = as_uuid(public_id)
    if key is None:
        return None
    return cast(InboundMessage | None, InboundMessage.objects.for_tenant(tenant).filter(public_id=key).first())
