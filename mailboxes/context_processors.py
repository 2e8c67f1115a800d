from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .auth import needs_reconnect
from .models import Mailbox
from .selectors import mailboxes_needing_reconnect


def mailbox_alerts(request: HttpRequest) -> dict[str, Any]:
    """The logged-in staff member's mailboxes that need reconnecting, for the banner on every page.

    Lazy: the query runs only when a template renders the banner (base.html; the profile shows its
    own banners and does not)."""
    staff = getattr(request, "staff", None)
    if staff is None:
        return {}
    if not needs_reconnect(request.user):  # said by the user's own query (auth.StaffMailboxBackend)
        return {"mailboxes_needing_reconnect": []}

    def load() -> list[Mailbox]:
        return list(mailboxes_needing_reconnect(staff=staff))

    return {"mailboxes_needing_reconnect": SimpleLazyObject(load)}
