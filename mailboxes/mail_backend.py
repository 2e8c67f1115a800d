"""EMAIL_BACKEND: django.core.mail goes through the outbound service (mailboxes/sending.py).

- From a staff member's address: queued like any message of theirs (their mailbox, else the
  company's sending mailbox, else the relay with "Name via Company" and Reply-To).
- With an `X-TMS-Tenant: <slug>` header (removed before sending): the company's system mail,
  queued through the relay and logged.
- Anything else (password resets, mail that belongs to no company): submitted through the system
  relay now, as Django's SMTP backend would.
`X-TMS-Related: kind:id` (removed too) fills OutboundMessage.related.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from email.mime.base import MIMEBase
from email.utils import parseaddr

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage, EmailMultiAlternatives

from tms.accounts.models import Staff, Tenant

from .sending import Attachment, Outgoing, messages_queue, relay_send

log = logging.getLogger(__name__)

TENANT_HEADER = "X-TMS-Tenant"
RELATED_HEADER = "X-TMS-Related"


def _attachments(message: EmailMessage) -> list[Attachment]:
    found: list[Attachment] = []
    for item in message.attachments:
        if isinstance(item, MIMEBase):
            payload = item.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            found.append(Attachment(item.get_filename() or "attachment", content, item.get_content_type()))
            continue
        filename, content, mimetype = item
        data = content.encode() if isinstance(content, str) else bytes(content)
        found.append(Attachment(filename or "attachment", data, mimetype or "application/octet-stream"))
    return found


def _html(message: EmailMessage) -> str | None:
    if isinstance(message, EmailMultiAlternatives):
        for alternative in message.alternatives:
            content, mimetype = alternative[0], alternative[1]
            if mimetype == "text/html":
                return content if isinstance(content, str) else str(content)
    if message.content_subtype == "html":
        return str(message.body)
    return None


def _outgoing(message: EmailMessage) -> tuple[Outgoing, str, str, str]:
    """The message as the service takes it, with its tenant header, From name and From address."""
    headers = {k: v for k, v in (message.extra_headers or {}).items()}
    tenant_slug = str(headers.pop(TENANT_HEADER, "") or "")
    related = str(headers.pop(RELATED_HEADER, "") or "")
    html = _html(message)
    body_text = str(message.body) if message.content_subtype != "html" else ""
    outgoing = Outgoing(
        to=list(message.to), cc=list(message.cc), bcc=list(message.bcc), subject=str(message.subject),
        body_text=body_text or " ", body_html=html, attachments=_attachments(message),
        reply_to=message.reply_to[0] if message.reply_to else None, related=related,
    )
    from_name, from_addr = parseaddr(str(message.from_email or ""))
    return outgoing, tenant_slug, from_name, from_addr


def _staff(from_addr: str) -> Staff | None:
    found: Staff | None = (
        Staff.unscoped.select_related("tenant").filter(email__iexact=from_addr).first() if from_addr else None
    )
    return found


def send_django_message(message: EmailMessage) -> str:
    """Hand one django.core.mail message to the outbound service; returns its Message-ID."""
    outgoing, tenant_slug, from_name, from_addr = _outgoing(message)
    staff = _staff(from_addr)
    if staff is not None:
        return messages_queue(tenant=staff.tenant, staff=staff, messages=[outgoing])[0].message_id
    tenant = Tenant.objects.filter(slug=tenant_slug).first() if tenant_slug else None
    return relay_send(
        tenant=tenant, from_name=from_name or None, to=outgoing.to, cc=outgoing.cc, bcc=outgoing.bcc,
        subject=outgoing.subject, body_text=outgoing.body_text, body_html=outgoing.body_html,
        attachments=outgoing.attachments, reply_to=outgoing.reply_to, related=outgoing.related,
    )


class EmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        messages = [m for m in email_messages if m.recipients()]
        sent = 0
        for run in self._runs_from_one_staff_member(messages):
            if len(run) > 1:
                # Many messages from one staff member: one messages_queue() call (one INSERT, one
                # delivery task over one SMTP connection). All or nothing, so when one is refused
                # they go one by one below and only that one fails.
                staff = _staff(_outgoing(run[0])[3])
                if staff is not None:
                    try:
                        messages_queue(tenant=staff.tenant, staff=staff, messages=[_outgoing(m)[0] for m in run])
                    except Exception:
                        log.info("a batch of %d messages from django.core.mail goes one by one", len(run))
                    else:
                        sent += len(run)
                        continue
            for message in run:
                try:
                    send_django_message(message)
                except Exception:
                    if not self.fail_silently:
                        raise
                    log.exception("a message from django.core.mail could not be sent")
                else:
                    sent += 1
        return sent

    @staticmethod
    def _runs_from_one_staff_member(messages: Sequence[EmailMessage]) -> list[list[EmailMessage]]:
        """Consecutive messages with the same From address (no tenant header: those are system mail)."""
        runs: list[list[EmailMessage]] = []
        last = None
        for message in messages:
            system = TENANT_HEADER in (message.extra_headers or {})
            key = None if system else parseaddr(str(message.from_email or ""))[1].lower()
            if runs and key is not None and key == last:
                runs[-1].append(message)
            else:
                runs.append([message])
            last = key
        return runs
