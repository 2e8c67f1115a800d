"""The authentication backend of the site (settings.AUTHENTICATION_BACKENDS): tms.accounts'
StaffModelBackend, whose per-request user query also says whether the staff member has a mailbox
that needs reconnecting (an EXISTS in the same query).

Every page shows a banner for such mailboxes (context_processors.mailbox_alerts); asking for them
was a query of its own on every page (1 ms of a 5 ms page, bench/README.md "Pages"), and there are
almost never any. With the flag the list is read only when there is something to show.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from tms.accounts.backends import StaffModelBackend

from .models import Mailbox

NEEDS_RECONNECT = "mailboxes_need_reconnect"  # the attribute on request.user


class StaffMailboxBackend(StaffModelBackend):
    def user_queryset(self) -> QuerySet[Any]:
        # The staff member's own mailboxes (a user is one staff member: Staff.user is one-to-one).
        lost = Mailbox.unscoped.filter(staff__user=OuterRef("pk"), status=Mailbox.Status.NEEDS_REAUTHORIZATION)
        return super().user_queryset().annotate(**{NEEDS_RECONNECT: Exists(lost)})


def needs_reconnect(user: Any) -> bool:
    """False only when the user's query said there is no mailbox to reconnect (a user loaded
    some other way does not know: True, and the caller looks)."""
    return bool(getattr(user, NEEDS_RECONNECT, True))
