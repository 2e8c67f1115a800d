"""Mail a mailbox could not process: quarantined, failed and too-large messages, with a Retry.

Visible to the mailbox's owner and to their company's admins; anyone else gets a 404.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from tms.accounts.models import Staff
from tms.accounts.views import staff_required

from .intake import inbound_message_retry, inbound_messages_needing_attention
from .models import InboundMessage, Mailbox


def _visible_mailbox(request: HttpRequest, id: Any) -> Mailbox:
    staff: Staff = request.staff  # type: ignore[attr-defined]
    mailboxes = Mailbox.objects.for_tenant(staff.tenant)
    if not staff.is_admin:
        mailboxes = mailboxes.filter(staff=staff)
    mailbox = mailboxes.filter(public_id=id).first()
    if mailbox is None:
        raise Http404("No such mailbox.")
    return mailbox


@require_GET
@staff_required
def inbound_list(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _visible_mailbox(request, id)
    rows = inbound_messages_needing_attention(mailbox=mailbox)
    return render(request, "mailboxes/inbound_list.html", {
        "mailbox": mailbox, "rows": rows, "max_attempts": settings.MAILBOX_MAX_ATTEMPTS,
    })


@require_POST
@staff_required
def inbound_retry(request: HttpRequest, id: Any, message_id: Any) -> HttpResponse:
    mailbox = _visible_mailbox(request, id)
    message = InboundMessage.objects.for_tenant(mailbox.tenant).filter(mailbox=mailbox, public_id=message_id).first()
    if message is None:
        raise Http404("No such message.")
    before = message.status
    message = inbound_message_retry(message=message)
    if message.status == InboundMessage.Status.RECEIVED and before != message.status:
        title = message.subject or message.message_id
        messages.success(request, f"“{title}” will be processed again at the next read.")
    else:
        messages.error(request, "Only failed or quarantined messages can be retried.")
    return redirect("mailbox-inbound", id=mailbox.public_id)
