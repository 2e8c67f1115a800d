"""Reads of mailboxes. Scoped to a staff member or tenant; cross-tenant reads say `unscoped` out loud."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from tms.accounts.models import Staff, Tenant
from tms.rows import Row

from .models import Mailbox, MailboxEvent, Provider


def mailboxes_of_staff(*, staff: Staff) -> QuerySet[Mailbox]:
    """The staff member's own mailboxes, default first."""
    return (Mailbox.objects.for_tenant(staff.tenant).filter(staff=staff)
            .order_by("-is_default", "email_address"))


# What the profile's mailbox list shows (templates/mailboxes/profile.html), read as plain values:
# never the secrets, no model instances (a page of 50 rows took 2 ms to read as models).
MAILBOX_LIST_VALUES = ("public_id", "email_address", "is_default", "provider", "permission", "post_processing",
                       "status", "last_read_at", "access_token_expires_at", "last_error", "last_error_at")
_LABELS = {"provider": dict(Provider.choices), "permission": dict(Mailbox.Permission.choices),
           "post_processing": dict(Mailbox.PostProcessing.choices), "status": dict(Mailbox.Status.choices)}


def mailbox_list_values(qs: QuerySet[Mailbox]) -> QuerySet[Any]:
    return qs.values(*MAILBOX_LIST_VALUES)


def mailbox_list_row(values: dict[str, Any]) -> Row:
    """One row of the list: the values, each choice's label as `<name>_label`, and `reads`."""
    row = Row(values)
    for name, labels in _LABELS.items():
        row[f"{name}_label"] = labels.get(values[name], values[name])
    row["reads"] = values["permission"] == Mailbox.Permission.SEND_AND_READ
    return row


def mailboxes_needing_reconnect(*, staff: Staff) -> QuerySet[Mailbox]:
    """The staff member's mailboxes that TMS can no longer sign in to (the reconnect banners)."""
    return (mailboxes_of_staff(staff=staff).filter(status=Mailbox.Status.NEEDS_REAUTHORIZATION)
            .only("public_id", "email_address", "last_error"))


def mailbox_of_staff(*, staff: Staff, public_id: Any) -> Mailbox | None:
    """One of the staff member's own mailboxes by public id; None for anyone else's (the caller 404s)."""
    try:
        key = uuid.UUID(str(public_id))
    except ValueError:
        return None
    return mailboxes_of_staff(staff=staff).filter(public_id=key).first()


def mailboxes_of_tenant(*, tenant: Tenant) -> QuerySet[Mailbox]:
    return Mailbox.objects.for_tenant(tenant).select_related("staff").order_by("email_address")


def mailboxes_needing_reauthorization(*, staff: Staff) -> QuerySet[Mailbox]:
    return mailboxes_of_staff(staff=staff).filter(status=Mailbox.Status.NEEDS_REAUTHORIZATION)


def mailbox_events(*, mailbox: Mailbox, limit: int = 20) -> list[MailboxEvent]:
    return list(MailboxEvent.objects.for_tenant(mailbox.tenant).filter(mailbox=mailbox)[:limit])


def mailbox_list_all(*, tenant: Tenant | None = None) -> QuerySet[Mailbox]:
    """Every mailbox (operator commands), or one tenant's. Crossing tenants is intended here."""
    qs = Mailbox.unscoped.select_related("staff", "tenant").order_by("tenant__slug", "email_address", "id")
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    return qs


def mailbox_by_ref(ref: str) -> Mailbox | None:
    """A mailbox by its integer id or its public UUID (operator commands; crosses tenants)."""
    ref = str(ref).strip()
    qs = Mailbox.unscoped.select_related("staff", "tenant")
    if ref.isdigit():
        return qs.filter(pk=int(ref)).first()
    try:
        return qs.filter(public_id=uuid.UUID(ref)).first()
    except ValueError:
        return None
