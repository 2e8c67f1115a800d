from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .models import Mailbox


def mailbox_alerts(request: HttpRequest) -> dict[str, Any]:
    """The logged-in staff member's mailboxes that need reconnecting, for the banner on every page.

    Lazy: the query runs only when a template renders the banner."""
    staff = getattr(request, "staff", None)
    if staff is None:
        return {}

    def load() -> list[Mailbox]:
        return list(
            Mailbox.objects.for_tenant(staff.tenant)
            .filter(staff=staff, status=Mailbox.Status.NEEDS_REAUTHORIZATION)
            .only("public_id", "email_address")
        )

    return {"mailboxes_needing_reconnect": SimpleLazyObject(load)}
