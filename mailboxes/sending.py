"""The one service for everything the TMS sends.

message_queue() checks the message (header injection, routing, the mailbox's policy, size), builds
the exact bytes once, stores an OutboundMessage QUEUED and enqueues delivery after commit.
message_deliver() claims the row with a conditional UPDATE (QUEUED -> SENDING), so a task run twice
sends once, waits for the throttle, submits over SMTP (aiosmtplib, verified TLS, XOAUTH2 or a
password through mailboxes.connections), and files the copy in the Sent folder of IMAP/SMTP
mailboxes (Google and Microsoft file SMTP-submitted mail themselves).

Route: the given mailbox, else the sender's default active mailbox, else the company's sending
mailbox, else the system relay (RELAY_SMTP_URL). Relayed mail says honestly who it is from:
From "<Name> via <Company>" <relay address>, Reply-To the staff member.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.policy
import functools
import io
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.contentmanager import raw_data_manager
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import MIMEPart
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from tms.logging import log_context

from . import metrics
from .models import InboundMessage, Mailbox, MailboxEvent, OutboundMessage, Route, Security, TenantSendingMailbox
from .providers import AuthorizationError, Endpoint, ProviderError, SmtpAuth, get_provider
from .signals import message_sent
from .throttle import (
    Clock,
    Limits,
    Throttle,
    get_throttle,
    limits_for_mailbox,
    limits_for_relay,
    limits_for_tenant_mailbox,
)
from .validators import recipient_exclude_regex_validate

if TYPE_CHECKING:
    from tms.accounts.models import Staff, Tenant

log = logging.getLogger(__name__)

Status = OutboundMessage.Status


class SendRefused(ValueError):
    """Refused before anything was queued; the message says why (shown to the user as is)."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str = "application/octet-stream"


@dataclass(frozen=True)
class RouteChoice:
    kind: str  # Route value
    mailbox: Mailbox | None = None
    tenant_mailbox: TenantSendingMailbox | None = None

    @property
    def throttle_key(self) -> str:
        if self.kind == Route.MAILBOX and self.mailbox is not None:
            return f"mailbox:{self.mailbox.pk}"
        if self.kind == Route.TENANT and self.tenant_mailbox is not None:
            return f"tenant-mailbox:{self.tenant_mailbox.pk}"
        return "relay"

    @property
    def limits(self) -> Limits:
        if self.kind == Route.MAILBOX and self.mailbox is not None:
            return limits_for_mailbox(self.mailbox)
        if self.kind == Route.TENANT:
            return limits_for_tenant_mailbox()
        return limits_for_relay()


@dataclass
class DeliveryResult:
    status: str
    retry_in: float | None = None  # seconds: still QUEUED, try again then
    error: str = ""


# ----------------------------------------------------------------------------- Message-IDs


def message_id_domain() -> str:
    return str(settings.MAILBOX_MESSAGE_ID_DOMAIN)


def message_id_make() -> str:
    """<32 hex digits@tms.<site host>>: random, and recognisable when a reply quotes it."""
    return f"<{uuid.uuid4().hex}@{message_id_domain()}>"


def is_our_message_id(message_id: str) -> bool:
    """True when the Message-ID (with or without angle brackets) has the shape of ours."""
    pattern = r"<?[0-9a-f]{32}@" + re.escape(message_id_domain()) + r">?"
    return re.fullmatch(pattern, (message_id or "").strip(), flags=re.IGNORECASE) is not None


# ----------------------------------------------------------------------------- checks


def _no_line_breaks(name: str, value: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise SendRefused(f"{name} contains a line break; header values must be one line (refused: {value[:60]!r})")
    return value


def _address(name: str, value: str) -> Address:
    _no_line_breaks(name, value)
    parsed = getaddresses([value])
    if len(parsed) != 1 or not parsed[0][1] or not re.fullmatch(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+", parsed[0][1]):
        raise SendRefused(f"{name}: not an e-mail address: {value!r}")
    display, addr = parsed[0]
    local, _, domain = addr.rpartition("@")
    if not domain.isascii():
        # An internationalised domain goes as its A-label (RFC 5890, punycode) in the header and
        # the envelope: an encoded word is not allowed in a domain, and SMTP without SMTPUTF8
        # carries ASCII only.
        try:
            addr = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            raise SendRefused(f"{name}: not a usable domain: {value!r}") from None
    try:
        return Address(display_name=display, addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise SendRefused(f"{name}: not an e-mail address: {value!r} ({exc})") from None


def _addresses(name: str, values: Iterable[str]) -> list[Address]:
    if isinstance(values, str):
        values = [values]
    return [_address(name, v) for v in values]


def known_contact_default(*, tenant: Tenant, address: str) -> bool:
    """Known to the company: one of its staff, or someone it has received mail from."""
    from tms.accounts.models import Staff

    if Staff.objects.for_tenant(tenant).filter(email__iexact=address).exists():
        return True
    boundary = r"(^|[<\s,:;])" + re.escape(address) + r"($|[>\s,;])"
    return InboundMessage.objects.for_tenant(tenant).filter(from_address__iregex=boundary).exists()


def _known_contact(*, tenant: Tenant, address: str) -> bool:
    checker: Callable[..., bool] = import_string(settings.MAILBOX_KNOWN_CONTACT_CHECKER)
    return bool(checker(tenant=tenant, address=address))


def policy_check(*, mailbox: Mailbox, tenant: Tenant, recipients: Sequence[str]) -> None:
    """The mailbox's sending policy: exclude pattern and allowed recipients. Raises SendRefused."""
    pattern = mailbox.recipient_exclude_regex
    if pattern:
        try:
            recipient_exclude_regex_validate(pattern)
        except ValidationError as exc:
            reason = " ".join(exc.messages)
            raise SendRefused(f"the mailbox's recipient exclude pattern is not usable: {reason}") from None
        regex = re.compile(pattern, re.IGNORECASE)
        for address in recipients:
            if regex.search(address):
                raise SendRefused(
                    f"{address} is excluded by the recipient exclude pattern of {mailbox.email_address}"
                )
    if mailbox.allowed_recipients == Mailbox.AllowedRecipients.CONTACTS:
        for address in recipients:
            if not _known_contact(tenant=tenant, address=address):
                raise SendRefused(
                    f"{address} is not a contact known to {tenant.name}; {mailbox.email_address} "
                    "may only send to known contacts"
                )


# ----------------------------------------------------------------------------- routing


def _tenant_mailbox(tenant: Tenant) -> TenantSendingMailbox | None:
    found: TenantSendingMailbox | None = TenantSendingMailbox.objects.for_tenant(tenant).first()
    return found if found is not None and found.usable else None


def route_choose(*, tenant: Tenant, staff: Staff | None = None, mailbox: Mailbox | None = None) -> RouteChoice:
    """The given mailbox, else the sender's default active mailbox, else the company's sending
    mailbox, else the system relay. Raises SendRefused for a mailbox the sender may not use."""
    if mailbox is not None:
        if mailbox.tenant_id != tenant.pk:
            raise SendRefused("that mailbox belongs to another company")
        if staff is not None and mailbox.staff_id != staff.pk:
            raise SendRefused(f"{mailbox.email_address} is not {staff.name}'s mailbox")
        if mailbox.status != Mailbox.Status.ACTIVE:
            raise SendRefused(f"{mailbox.email_address} is not active ({mailbox.get_status_display()})")
        return RouteChoice(Route.MAILBOX, mailbox=mailbox)
    if staff is not None:
        if staff.tenant_id != tenant.pk:
            raise SendRefused("that staff member belongs to another company")
        own = (
            Mailbox.objects.for_tenant(tenant)
            .filter(staff=staff, status=Mailbox.Status.ACTIVE)
            .order_by("-is_default", "id")
            .first()
        )
        if own is not None:
            return RouteChoice(Route.MAILBOX, mailbox=own)
    company = _tenant_mailbox(tenant)
    if company is not None:
        return RouteChoice(Route.TENANT, tenant_mailbox=company)
    if not settings.RELAY_SMTP_URL:
        raise SendRefused("no way to send: connect a mailbox, or set RELAY_SMTP_URL for the system relay")
    return RouteChoice(Route.RELAY)


def _from_and_reply_to(
    choice: RouteChoice, *, tenant: Tenant | None, staff: Staff | None, from_name: str | None
) -> tuple[Address, Address | None]:
    if choice.kind == Route.MAILBOX and choice.mailbox is not None:
        mailbox = choice.mailbox
        name = from_name or mailbox.display_name or (staff.name if staff else "")
        # Names come from rows others edit (staff, mailbox): a line break there is a header
        # injection, refused here rather than left to email's ValueError (a 500).
        _no_line_breaks("From name", name)
        return Address(display_name=name, addr_spec=mailbox.sender_address), None
    if choice.kind == Route.TENANT and choice.tenant_mailbox is not None:
        address = choice.tenant_mailbox.sending_address
    else:
        address = settings.RELAY_FROM_EMAIL
    if staff is not None:
        _no_line_breaks("Staff name", staff.name)
    reply_to = Address(display_name=staff.name, addr_spec=staff.email) if staff is not None else None
    if staff is not None and tenant is not None:
        name = f"{staff.name} via {tenant.name}"
    elif from_name:
        name = from_name
    elif choice.kind == Route.TENANT and tenant is not None:
        name = tenant.name
    else:
        name = settings.RELAY_FROM_NAME
    _no_line_breaks("From name", name)
    return Address(display_name=name, addr_spec=address), reply_to


# ----------------------------------------------------------------------------- building


@dataclass
class _Built:
    raw: bytes
    message_id: str
    envelope_to: list[str]
    from_header: str
    subject: str
    references: list[str] = field(default_factory=list)


def _build_check(
    *, to: Sequence[str], cc: Sequence[str], bcc: Sequence[str], subject: str, subject_tag: str | None,
    in_reply_to: str | None, references: Sequence[str], attachments: Sequence[Attachment],
    extra_headers: dict[str, str] | None,
) -> tuple[str, list[Address], list[Address], list[Address], list[str]]:
    """Every value that becomes a header is one line (no CR, LF or NUL): refused otherwise."""
    _no_line_breaks("Subject", subject)
    if subject_tag:
        _no_line_breaks("Subject tag", subject_tag)
        if subject_tag not in subject:
            subject = f"{subject_tag} {subject}"
    to_addrs = _addresses("To", to)
    cc_addrs = _addresses("Cc", cc)
    bcc_addrs = _addresses("Bcc", bcc)
    if not (to_addrs or cc_addrs or bcc_addrs):
        raise SendRefused("no recipients")
    if in_reply_to:
        _no_line_breaks("In-Reply-To", in_reply_to)
    refs = [_no_line_breaks("References", r).strip() for r in references if r and r.strip()]
    if in_reply_to and in_reply_to.strip() not in refs:
        refs.append(in_reply_to.strip())  # RFC 5322 3.6.4: References ends with the parent's id
    for name, value in (extra_headers or {}).items():
        _no_line_breaks(name, name)
        _no_line_breaks(name, value)
    for attachment in attachments:
        _no_line_breaks("Attachment file name", attachment.filename)
        _no_line_breaks("Attachment type", attachment.mimetype)
        if attachment.mimetype.count("/") != 1:
            raise SendRefused(f"attachment {attachment.filename!r}: not a MIME type: {attachment.mimetype!r}")

    return subject, to_addrs, cc_addrs, bcc_addrs, refs


# The wire form is written with the compat32 policy (CRLF, no "From " mangling): the modern policy
# parses every header it is given back into objects and refolds them, about 80% of the cost of a
# message (PERF-NOTES lesson 6). Top-level headers are rendered here once: printable ASCII that
# fits on a line as is, anything else (non-ASCII names and subjects, long address lists) by the
# modern policy's header classes, which do the RFC 2047 encoding and folding. Bodies and
# attachments go through the standard library's content manager (the same choice of 7bit, 8bit,
# quoted-printable or base64 as EmailMessage.set_content), on cheap compat32 parts.
_WIRE = email.policy.compat32.clone(linesep="\r\n", mangle_from_=False)
_PLAIN_HEADER = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


@functools.lru_cache(maxsize=512)  # a batch's From and Reply-To are the same for every message
def _header_line(name: str, value: str) -> str:
    """One header as it goes on the wire: "Name: value" CRLF, encoded and folded when needed."""
    if len(name) + len(value) <= 76 and "=?" not in value and _PLAIN_HEADER.fullmatch(value):
        return f"{name}: {value}\r\n"
    return str(SMTP_POLICY.header_factory(name, value).fold(policy=SMTP_POLICY))


# In-Reply-To and References hold msg-ids, in which RFC 2047 (section 5) allows no encoded word:
# the header classes above would encode an id that does not fit on a line (Outlook's are about
# 80 characters) and so break the thread. They are folded between ids only; an id that is not
# printable ASCII, or too long for a line of 998 octets (RFC 5322 2.1.1), cannot be written as a
# msg-id and is left out of the header (the row keeps the value as given).
_MSG_ID_TOKEN = re.compile(r"[\x21-\x7e]{1,900}")


def _msg_ids_line(name: str, value: str) -> str:
    """ "Name: <id> <id>" CRLF, folded between ids at 78 characters; "" when no id can be written."""
    ids = [token for token in value.split() if _MSG_ID_TOKEN.fullmatch(token)]
    if not ids:
        return ""
    lines = [f"{name}: {ids[0]}"]
    for token in ids[1:]:
        if len(lines[-1]) + 1 + len(token) > 78:
            lines.append("")
        lines[-1] += f" {token}"
    return "\r\n".join(lines) + "\r\n"


def _addresses_value(addresses: Sequence[Address]) -> str:
    return ", ".join(str(a) for a in addresses)


def _text_part(text: str, subtype: str) -> MIMEPart:
    part = MIMEPart(policy=_WIRE)
    raw_data_manager.set_content(part, text, subtype=subtype)
    return part


def _attachment_part(attachment: Attachment) -> MIMEPart:
    maintype, subtype = attachment.mimetype.split("/", 1)
    part = MIMEPart(policy=_WIRE)
    raw_data_manager.set_content(part, attachment.content, maintype, subtype, disposition="attachment")
    # A non-ASCII file name as an RFC 2231 parameter (filename*=utf-8''...), as the modern policy does.
    charset = None if attachment.filename.isascii() else "utf-8"
    part.set_param("filename", attachment.filename, header="Content-Disposition", charset=charset)  # type: ignore[arg-type]
    if len("Content-Disposition: ") + len(part["Content-Disposition"]) > 78:
        # compat32 writes a parameter on one line of any length (a long non-ASCII name passes 998
        # octets, RFC 5322 2.1.1): a name this long goes in RFC 2231 continuations (filename*0*=,
        # filename*1*=, ...), folded by the modern policy's header class as before compat32.
        part.replace_header("Content-Disposition", _folded_disposition(attachment.filename))
    return part


def _folded_disposition(filename: str) -> str:
    modern = MIMEPart(policy=SMTP_POLICY)
    modern["Content-Disposition"] = "attachment"
    modern.set_param("filename", filename, header="Content-Disposition")
    return str(modern["Content-Disposition"].fold(policy=SMTP_POLICY)).split(":", 1)[1].strip()


def _multipart(subtype: str, parts: Sequence[MIMEPart]) -> MIMEPart:
    container = MIMEPart(policy=_WIRE)
    container["Content-Type"] = f"multipart/{subtype}"
    for part in parts:
        container.attach(part)
    return container


def _body(body_text: str, body_html: str | None, attachments: Sequence[Attachment]) -> bytes:
    """The MIME body with its Content-* headers: text, text + HTML alternative, then attachments."""
    body = _text_part(body_text, "plain")
    if body_html:
        body = _multipart("alternative", [body, _text_part(body_html, "html")])
    if attachments:
        body = _multipart("mixed", [body, *(_attachment_part(a) for a in attachments)])
    out = io.BytesIO()
    BytesGenerator(out, policy=_WIRE).flatten(body)
    return out.getvalue()


def _build(
    *,
    from_addr: Address,
    reply_to: Address | None,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    subject: str,
    body_text: str,
    body_html: str | None,
    attachments: Sequence[Attachment],
    in_reply_to: str | None,
    references: Sequence[str],
    subject_tag: str | None,
    extra_headers: dict[str, str] | None = None,
) -> _Built:
    subject, to_addrs, cc_addrs, bcc_addrs, refs = _build_check(
        to=to, cc=cc, bcc=bcc, subject=subject, subject_tag=subject_tag, in_reply_to=in_reply_to,
        references=references, attachments=attachments, extra_headers=extra_headers,
    )
    message_id = message_id_make()
    from_header = str(from_addr)
    headers = [_header_line("From", from_header)]
    if to_addrs:
        headers.append(_header_line("To", _addresses_value(to_addrs)))
    if cc_addrs:
        headers.append(_header_line("Cc", _addresses_value(cc_addrs)))
    if reply_to is not None:
        headers.append(_header_line("Reply-To", str(reply_to)))
    headers.append(_header_line("Subject", subject))
    headers.append(f"Date: {format_datetime(datetime.now(UTC))}\r\n")
    headers.append(f"Message-ID: {message_id}\r\n")
    if in_reply_to:
        headers.append(_msg_ids_line("In-Reply-To", in_reply_to))
    if refs:
        headers.append(_msg_ids_line("References", " ".join(refs)))
    for name, value in (extra_headers or {}).items():
        headers.append(_header_line(name, value))
    headers.append("MIME-Version: 1.0\r\n")
    raw = "".join(headers).encode("ascii") + _body(body_text, body_html, attachments)
    envelope: list[str] = []
    seen: set[str] = set()
    for addr in (*to_addrs, *cc_addrs, *bcc_addrs):
        if addr.addr_spec.lower() not in seen:
            seen.add(addr.addr_spec.lower())
            envelope.append(addr.addr_spec)
    return _Built(raw, message_id, envelope, from_header, subject, refs)


# ----------------------------------------------------------------------------- queueing


@dataclass(frozen=True)
class Outgoing:
    """One message of a messages_queue() batch: what message_queue() takes per message."""

    to: Sequence[str]
    subject: str
    body_text: str
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    body_html: str | None = None
    attachments: Sequence[Attachment] = ()
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    related: str = ""
    subject_tag: str | None = None
    reply_to: str | None = None


def message_queue(
    *,
    tenant: Tenant,
    staff: Staff | None = None,
    mailbox: Mailbox | None = None,
    to: Sequence[str],
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    subject: str,
    body_text: str,
    body_html: str | None = None,
    attachments: Sequence[Attachment] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    related: str = "",
    subject_tag: str | None = None,
    reply_to: str | None = None,
    from_name: str | None = None,
    relay: bool = False,
    enqueue: bool = True,
) -> OutboundMessage:
    """Check, build and store a message QUEUED; its delivery task is enqueued after commit.

    Raises SendRefused (a ValueError) with a clear reason when the message may not go: a line break
    in a header value, a mailbox of someone else or of another company, a recipient refused by the
    mailbox's policy, too many recipients, too large. Nothing is stored then.
    relay=True sends through the system relay whatever the sender has connected (system mail).
    """
    message = Outgoing(
        to=to, cc=cc, bcc=bcc, subject=subject, body_text=body_text, body_html=body_html, attachments=attachments,
        in_reply_to=in_reply_to, references=references, related=related, subject_tag=subject_tag,
        reply_to=reply_to,
    )
    return messages_queue(tenant=tenant, staff=staff, mailbox=mailbox, messages=[message], from_name=from_name,
                          relay=relay, enqueue=enqueue)[0]


def messages_queue(
    *,
    tenant: Tenant,
    staff: Staff | None = None,
    mailbox: Mailbox | None = None,
    messages: Sequence[Outgoing],
    from_name: str | None = None,
    relay: bool = False,
    enqueue: bool = True,
) -> list[OutboundMessage]:
    """message_queue() for many messages from one sender (django.core.mail's send_messages, mail
    merges): the route is chosen and the policy checked once for the batch, the rows stored with
    one INSERT, and delivery of a batch through a mailbox is one task over one SMTP connection.

    All or nothing: when one message may not go, SendRefused says which ("message 3 of 10: ...")
    and nothing is stored.
    """
    if from_name:
        _no_line_breaks("From name", from_name)
    if relay:
        if not settings.RELAY_SMTP_URL:
            raise SendRefused("RELAY_SMTP_URL is not set: the system relay is not configured")
        choice = RouteChoice(Route.RELAY)
    else:
        choice = route_choose(tenant=tenant, staff=staff, mailbox=mailbox)
    from_addr, default_reply_to = _from_and_reply_to(choice, tenant=tenant, staff=staff, from_name=from_name)
    limits = choice.limits
    built: list[_Built] = []
    for index, message in enumerate(messages):
        try:
            built.append(_build_limited(message, from_addr=from_addr, default_reply_to=default_reply_to,
                                        limits=limits))
        except SendRefused as exc:
            if len(messages) == 1:
                raise
            raise SendRefused(f"message {index + 1} of {len(messages)}: {exc}") from None
    if choice.mailbox is not None:
        # One check for the batch: each distinct recipient once.
        recipients = list(dict.fromkeys(address for b in built for address in b.envelope_to))
        policy_check(mailbox=choice.mailbox, tenant=tenant, recipients=recipients)

    rows = [
        OutboundMessage(
            tenant=tenant,
            mailbox=choice.mailbox,
            staff=staff,
            route=choice.kind,
            via_relay=choice.kind == Route.RELAY,
            from_address=b.from_header,
            recipients=b.envelope_to,
            subject=b.subject,
            message_id=b.message_id,
            in_reply_to=(message.in_reply_to or "").strip(),
            references=" ".join(b.references),
            raw=b.raw,
            related=message.related,
        )
        for message, b in zip(messages, built, strict=True)
    ]
    if len(rows) == 1:
        rows[0].save(force_insert=True)  # one round trip: bulk_create adds a transaction (a COMMIT)
    else:
        # One INSERT per 500 rows, all in one transaction (bulk_create's): stored whole or not at all.
        rows = OutboundMessage.objects.for_tenant(tenant).bulk_create(rows, batch_size=_INSERT_BATCH)
    for row in rows:
        log.info("outbound %s queued via %s (%d recipients)", row.pk, choice.kind, len(row.recipients))
    if enqueue and rows:
        _enqueue_after_commit(choice, [row.pk for row in rows])
    return rows


def _enqueue_after_commit(choice: RouteChoice, ids: list[int]) -> None:
    """A batch through a mailbox: one task for the mailbox (one SMTP connection); else one per message."""
    if len(ids) > 1 and choice.kind == Route.MAILBOX and choice.mailbox is not None:
        mailbox_id = choice.mailbox.pk
        transaction.on_commit(lambda: mailbox_enqueue(mailbox_id))
    else:
        transaction.on_commit(lambda: _enqueue_each(ids))


_INSERT_BATCH = 500


def _build_limited(message: Outgoing, *, from_addr: Address, default_reply_to: Address | None,
                   limits: Limits) -> _Built:
    _no_line_breaks("related", message.related)
    reply_addr = _address("Reply-To", message.reply_to) if message.reply_to else default_reply_to
    built = _build(
        from_addr=from_addr, reply_to=reply_addr, to=message.to, cc=message.cc, bcc=message.bcc,
        subject=message.subject, body_text=message.body_text, body_html=message.body_html,
        attachments=message.attachments, in_reply_to=message.in_reply_to, references=message.references,
        subject_tag=message.subject_tag,
    )
    if limits.recipients_per_message and len(built.envelope_to) > limits.recipients_per_message:
        raise SendRefused(
            f"{len(built.envelope_to)} recipients; this mailbox takes at most {limits.recipients_per_message} "
            "recipients a message"
        )
    if limits.max_message_bytes and len(built.raw) > limits.max_message_bytes:
        raise SendRefused(
            f"the message is {len(built.raw) / 1048576:.1f} MB; this mailbox sends at most "
            f"{limits.max_message_bytes / 1048576:.0f} MB (attachments included)"
        )
    return built


def _enqueue_each(outbound_ids: Sequence[int]) -> None:
    for outbound_id in outbound_ids:
        outbound_enqueue(outbound_id)


def mailbox_enqueue(mailbox_id: int) -> None:
    from .tasks.send import mailbox_deliver_queued

    mailbox_deliver_queued.delay(mailbox_id)


def outbound_enqueue(outbound_id: int, countdown: float | None = None) -> None:
    from .tasks.send import outbound_deliver

    if countdown:
        outbound_deliver.apply_async((outbound_id,), countdown=max(1, int(countdown + 0.999)))
    else:
        outbound_deliver.delay(outbound_id)


def relay_send(
    *,
    tenant: Tenant | None = None,
    to: Sequence[str],
    subject: str,
    body_text: str,
    body_html: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: str | None = None,
    from_name: str | None = None,
    attachments: Sequence[Attachment] = (),
    related: str = "",
) -> str:
    """System mail ("Email Assistant") through the relay; returns the Message-ID.

    With a tenant it is queued and logged like any message. Without one (password resets and other
    mail that belongs to no company) it is submitted now, and a failure raises SendRefused.
    """
    if tenant is not None:
        return message_queue(
            tenant=tenant, to=to, cc=cc, bcc=bcc, subject=subject, body_text=body_text, body_html=body_html,
            reply_to=reply_to, from_name=from_name or settings.RELAY_FROM_NAME, attachments=attachments,
            related=related, relay=True,
        ).message_id
    if not settings.RELAY_SMTP_URL:
        raise SendRefused("RELAY_SMTP_URL is not set: the system relay is not configured")
    if from_name:
        _no_line_breaks("From name", from_name)
    built = _build(
        from_addr=Address(display_name=from_name or settings.RELAY_FROM_NAME, addr_spec=settings.RELAY_FROM_EMAIL),
        reply_to=_address("Reply-To", reply_to) if reply_to else None, to=to, cc=cc, bcc=bcc, subject=subject,
        body_text=body_text, body_html=body_html, attachments=attachments, in_reply_to=None, references=(),
        subject_tag=None,
    )
    outcomes = _submit_all(RouteChoice(Route.RELAY), [(built.envelope_to, built.raw)])
    outcome = outcomes[0]
    if outcome.kind != "sent":
        raise SendRefused(f"the relay did not take the message: {outcome.text}")
    log.info("system mail %s sent through the relay", built.message_id)
    return built.message_id


# ----------------------------------------------------------------------------- SMTP


@dataclass
class _Outcome:
    kind: str  # sent | temporary | permanent | auth | untried
    text: str = ""


def relay_endpoint() -> tuple[Endpoint, str | None, str | None]:
    """RELAY_SMTP_URL as (endpoint, username, password): smtp:// (plain, 25), smtp+starttls://
    (587), smtps:// (465); user:pass@ optional and URL-quoted."""
    parts = urlsplit(settings.RELAY_SMTP_URL)
    security = {"smtp": Security.NONE, "smtp+starttls": Security.STARTTLS, "smtps": Security.SSL}[parts.scheme]
    default_port = {Security.NONE: 25, Security.STARTTLS: 587, Security.SSL: 465}[security]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return Endpoint(parts.hostname or "", parts.port or default_port, security), username, password


def _smtp_login_details(choice: RouteChoice) -> tuple[Endpoint, SmtpAuth]:
    """Where to submit and how to log in, decided before the event loop starts: refreshing an
    OAuth token reads and writes the database, which Django does not allow inside async code."""
    from .connections import guard

    if choice.kind == Route.MAILBOX and choice.mailbox is not None:
        provider = get_provider(choice.mailbox.provider)
        endpoint = provider.smtp_endpoint(choice.mailbox)
        guard(endpoint)  # user-supplied host: the private-address guard
        return endpoint, provider.smtp_auth(choice.mailbox)
    if choice.kind == Route.TENANT and choice.tenant_mailbox is not None:
        from .tenant_sending import tenant_sending_access_token

        company = choice.tenant_mailbox
        token = tenant_sending_access_token(tenant_mailbox_id=company.pk)
        endpoint = Endpoint(settings.MICROSOFT_SMTP_HOST, settings.MICROSOFT_SMTP_PORT, Security.STARTTLS)
        return endpoint, SmtpAuth(username=company.sending_address, access_token=token)
    endpoint, username, password = relay_endpoint()
    return endpoint, SmtpAuth(username=username or "", password=password)


def _envelope_from(choice: RouteChoice) -> str:
    if choice.kind == Route.MAILBOX and choice.mailbox is not None:
        return choice.mailbox.email_address
    if choice.kind == Route.TENANT and choice.tenant_mailbox is not None:
        return choice.tenant_mailbox.sending_address
    return str(settings.RELAY_FROM_EMAIL)


def _submit_all(choice: RouteChoice, messages: Sequence[tuple[list[str], bytes]]) -> list[_Outcome]:
    """Submit the messages over one connection; one outcome each, in order."""
    with _Submission(choice) as submission:
        return submission.send(messages)


class _Submission:
    """One SMTP connection for a batch, driven chunk by chunk from synchronous code.

    It runs on an event loop of its own that runs only inside send(): between two chunks the
    caller writes the outcomes to the database (Django refuses ORM calls while a loop runs in the
    thread), so a worker that dies mid-batch leaves only its last chunk SENDING, not the batch.
    Once the connection is lost, every later message is "untried".
    """

    def __init__(self, choice: RouteChoice) -> None:
        self.choice = choice
        self.loop: asyncio.AbstractEventLoop | None = None
        self.smtp: aiosmtplib.SMTP | None = None
        self.failure: _Outcome | None = None  # the connection could not be opened, or was lost

    def __enter__(self) -> _Submission:
        try:
            endpoint, auth = _smtp_login_details(self.choice)
        except AuthorizationError as exc:
            self.failure = _Outcome("auth", exc.message)
            return self
        except ProviderError as exc:
            self.failure = _Outcome("permanent" if exc.permanent else "temporary", f"{exc.stage}: {exc.message}")
            return self
        self.loop = asyncio.new_event_loop()
        try:
            self.smtp = self.loop.run_until_complete(self._open(endpoint, auth))
        except AuthorizationError as exc:
            self.failure = _Outcome("auth", exc.message)
        except ProviderError as exc:
            self.failure = _Outcome("permanent" if exc.permanent else "temporary", f"{exc.stage}: {exc.message}")
        except BaseException:
            self.loop.close()
            raise
        return self

    @staticmethod
    async def _open(endpoint: Endpoint, auth: SmtpAuth) -> aiosmtplib.SMTP:
        from .connections import smtp_open

        return await smtp_open(endpoint, username=auth.username or None, password=auth.password,
                               access_token=auth.access_token)

    def send(self, messages: Sequence[tuple[list[str], bytes]]) -> list[_Outcome]:
        """One outcome per message, in order."""
        if self.failure is not None:
            lost = self.smtp is not None  # opened, then lost: the rest were never tried
            return [_Outcome("untried", "not attempted: the connection was lost") if lost else self.failure] * len(
                messages)
        assert self.loop is not None
        return self.loop.run_until_complete(self._send(messages))

    async def _send(self, messages: Sequence[tuple[list[str], bytes]]) -> list[_Outcome]:
        assert self.smtp is not None
        smtp, sender = self.smtp, _envelope_from(self.choice)
        outcomes: list[_Outcome] = []
        for recipients, raw in messages:
            try:
                refused, _ = await smtp.sendmail(sender, recipients, raw)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [e.code for e in exc.recipients]
                text = "; ".join(f"{e.recipient}: {e.code} {e.message}" for e in exc.recipients)
                outcomes.append(_Outcome("permanent" if all(c >= 500 for c in codes) else "temporary", text))
            except aiosmtplib.SMTPServerDisconnected as exc:
                outcomes.append(_Outcome("temporary", f"connection lost: {exc}"))
                self.failure = outcomes[-1]
                break
            except aiosmtplib.SMTPResponseException as exc:
                kind = "permanent" if exc.code >= 500 else "temporary"
                outcomes.append(_Outcome(kind, f"{exc.code} {exc.message}"))
            except (aiosmtplib.SMTPException, OSError) as exc:
                outcomes.append(_Outcome("temporary", f"{exc.__class__.__name__}: {exc}"))
                self.failure = outcomes[-1]
                break
            except ValueError as exc:
                # This message cannot go on the wire (a non-ASCII address without SMTPUTF8 raises
                # UnicodeEncodeError mid-envelope): its own permanent failure, not the batch's. The
                # session stopped inside a MAIL transaction, so the rest wait for a new connection.
                outcomes.append(_Outcome("permanent", f"not sendable: {exc.__class__.__name__}: {str(exc)[:300]}"))
                self.failure = _Outcome("temporary", "the connection was left after a message that could not be sent")
                break
            else:
                note = "; ".join(f"{rcpt} refused: {resp.code} {resp.message}" for rcpt, resp in refused.items())
                outcomes.append(_Outcome("sent", note))
        while len(outcomes) < len(messages):
            outcomes.append(_Outcome("untried", "not attempted: the connection was lost"))
        return outcomes

    def __exit__(self, *exc: object) -> None:
        loop = self.loop
        if loop is None:
            return
        try:
            if self.smtp is not None:
                loop.run_until_complete(self._quit(self.smtp))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    @staticmethod
    async def _quit(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


# ----------------------------------------------------------------------------- delivery


def _choice_for(outbound: OutboundMessage) -> RouteChoice | None:
    if outbound.route == Route.MAILBOX:
        return RouteChoice(Route.MAILBOX, mailbox=outbound.mailbox) if outbound.mailbox is not None else None
    if outbound.route == Route.TENANT:
        company = TenantSendingMailbox.unscoped.filter(tenant_id=outbound.tenant_id).first()
        return RouteChoice(Route.TENANT, tenant_mailbox=company) if company is not None else None
    return RouteChoice(Route.RELAY)


def _unusable_reason(choice: RouteChoice | None) -> str:
    if choice is None:
        return "the mailbox it was to be sent through was removed"
    if choice.kind == Route.MAILBOX and choice.mailbox is not None and choice.mailbox.status != Mailbox.Status.ACTIVE:
            return f"{choice.mailbox.email_address} is {choice.mailbox.get_status_display().lower()}"
    if choice.kind == Route.TENANT and choice.tenant_mailbox is not None and not choice.tenant_mailbox.usable:
        return f"the company sending mailbox is {choice.tenant_mailbox.get_status_display().lower()}"
    if choice.kind == Route.RELAY and not settings.RELAY_SMTP_URL:
        return "RELAY_SMTP_URL is not set"
    return ""


def _now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock(), tz=timezone.get_current_timezone())


def _backoff(attempts: int) -> float:
    return float(min(settings.OUTBOUND_RETRY_SECONDS * 2 ** max(attempts - 1, 0), 3600))


_CLAIM_CHUNK = 1000


def _claim(ids: Iterable[int], clock: Clock) -> list[int]:
    """QUEUED -> SENDING with a conditional UPDATE: whoever updates the row sends it.

    On PostgreSQL one UPDATE ... RETURNING per 1,000 rows (was one UPDATE per row). The subquery
    locks the rows in id order, so two claimers of overlapping batches wait rather than deadlock,
    and one that waited re-checks the status (READ COMMITTED) and skips what the other claimed.
    """
    now = _now(clock)
    ids = list(ids)
    if not ids:
        return []
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(OutboundMessage._meta.db_table)
        claimed: list[int] = []
        with connection.cursor() as cursor:
            for start in range(0, len(ids), _CLAIM_CHUNK):
                cursor.execute(
                    f"UPDATE {table} SET status = %s, claimed_at = %s, attempts = attempts + 1 "  # noqa: S608
                    f"WHERE id IN (SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s "
                    "AND (next_attempt_at IS NULL OR next_attempt_at <= %s) ORDER BY id FOR UPDATE) "
                    "RETURNING id",
                    [Status.SENDING, now, ids[start:start + _CLAIM_CHUNK], Status.QUEUED, now],
                )
                claimed.extend(row[0] for row in cursor.fetchall())
        return sorted(claimed)
    claimed = []
    for pk in ids:  # other databases (SQLite for the demo): one conditional UPDATE per row
        updated = (
            OutboundMessage.unscoped.filter(pk=pk, status=Status.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .update(status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1)
        )
        if updated == 1:
            claimed.append(pk)
    return claimed


def _requeue(pk: int, *, wait: float, clock: Clock, error: str = "", count_attempt: bool = False) -> None:
    """Back to QUEUED until now + wait. A throttle wait does not count as an attempt."""
    changes: dict[str, Any] = {
        "status": Status.QUEUED,
        "next_attempt_at": _now(clock) + timedelta(seconds=wait),
        "claimed_at": None,
    }
    if error:
        changes["last_error"] = error
    if not count_attempt:
        changes["attempts"] = F("attempts") - 1
    OutboundMessage.unscoped.filter(pk=pk, status=Status.SENDING).update(**changes)


def _fail(pk: int, error: str) -> None:
    OutboundMessage.unscoped.filter(pk=pk, status=Status.SENDING).update(
        status=Status.FAILED, last_error=error[:2000], next_attempt_at=None
    )
    log.info("outbound %s failed: %s", pk, error[:300])
    metrics.outbound_failed()


def _mark_needs_reauthorization(choice: RouteChoice, reason: str) -> None:
    if choice.kind == Route.MAILBOX and choice.mailbox is not None:
        mailbox = choice.mailbox
        try:
            from . import services

            mark = services.mailbox_mark_needs_reauthorization
        except (ImportError, AttributeError):
            Mailbox.unscoped.filter(pk=mailbox.pk).update(
                status=Mailbox.Status.NEEDS_REAUTHORIZATION, last_error=reason[:2000], last_error_at=timezone.now()
            )
            MailboxEvent.unscoped.create(
                tenant_id=mailbox.tenant_id, mailbox=mailbox, email_address=mailbox.email_address,
                kind=MailboxEvent.Kind.NEEDS_REAUTHORIZATION, detail=reason[:2000],
            )
        else:
            mark(mailbox=mailbox, reason=reason)
    elif choice.kind == Route.TENANT and choice.tenant_mailbox is not None:
        TenantSendingMailbox.unscoped.filter(pk=choice.tenant_mailbox.pk).update(
            status=TenantSendingMailbox.Status.NEEDS_REAUTHORIZATION, last_error=reason[:2000]
        )


def message_deliver(*, outbound_id: int, clock: Clock | None = None) -> DeliveryResult:
    """Deliver one queued message (the task body). Safe to run twice: the second run finds the row
    claimed or sent and does nothing."""
    with log_context(outbound=outbound_id):
        results = _deliver(_claim([outbound_id], clock or time.time), clock or time.time)
    if outbound_id in results:
        return results[outbound_id]
    row = OutboundMessage.unscoped.filter(pk=outbound_id).values("status", "next_attempt_at", "last_error").first()
    if row is None:
        return DeliveryResult(status="gone")
    retry_in = None
    if row["status"] == Status.QUEUED and row["next_attempt_at"] is not None:
        retry_in = max((row["next_attempt_at"] - _now(clock or time.time)).total_seconds(), 0.0)
    return DeliveryResult(status=row["status"], retry_in=retry_in, error=row["last_error"])


def mailbox_deliver_queued(
    *, mailbox_id: int, limit: int = 100, clock: Clock | None = None
) -> dict[int, DeliveryResult]:
    """Deliver the due queued messages of one mailbox over one SMTP connection."""
    clock = clock or time.time
    ids = list(
        OutboundMessage.unscoped.filter(mailbox_id=mailbox_id, route=Route.MAILBOX, status=Status.QUEUED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=_now(clock)))
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    return _deliver(_claim(ids, clock), clock)


def _deliver(claimed: list[int], clock: Clock) -> dict[int, DeliveryResult]:
    results: dict[int, DeliveryResult] = {}
    rows = list(
        OutboundMessage.unscoped.filter(pk__in=claimed, status=Status.SENDING)
        .select_related("mailbox", "tenant", "staff")
        .order_by("id")
    )
    groups: dict[tuple[str, int | None], list[OutboundMessage]] = {}
    for row in rows:
        groups.setdefault((row.route, row.mailbox_id if row.route == Route.MAILBOX else row.tenant_id), []).append(row)
    for group in groups.values():
        with log_context(tenant=group[0].tenant.slug, mailbox=group[0].mailbox_id):
            results.update(_deliver_group(group, clock))
    return results


def _deliver_group(rows: list[OutboundMessage], clock: Clock) -> dict[int, DeliveryResult]:
    """Claimed rows of one route: throttle, one connection, outcomes, Sent copies, notifications."""
    results: dict[int, DeliveryResult] = {}
    choice = _choice_for(rows[0])
    reason = _unusable_reason(choice)
    if reason or choice is None:
        for row in rows:
            _fail(row.pk, f"not sent: {reason}")
            results[row.pk] = DeliveryResult(Status.FAILED, error=f"not sent: {reason}")
        return results

    throttle = get_throttle(clock)
    ready = _reserve(choice, rows, throttle, clock, results)
    if not ready:
        return results
    slot = throttle.slot_acquire(choice.throttle_key, choice.limits.max_connections)
    if slot is None:  # the provider's concurrent-connection limit: wait a little
        for row in ready:
            _requeue(row.pk, wait=5.0, clock=clock)
            results[row.pk] = DeliveryResult(Status.QUEUED, retry_in=5.0)
        return results
    sent: list[OutboundMessage] = []
    copier: _SentCopier | None = None
    try:
        with _Submission(choice) as submission:
            index = 0
            while index < len(ready):
                # Outcomes are written every _SEND_CHUNK messages; once the connection failed, the
                # rest in one go (they all get the same outcome).
                size = _SEND_CHUNK if submission.failure is None else len(ready)
                chunk = ready[index:index + size]
                index += len(chunk)
                outcomes = submission.send([(list(r.recipients), bytes(r.raw or b"")) for r in chunk])
                chunk_sent = _record(choice, chunk, outcomes, clock, results)
                sent += chunk_sent
                pending = [r for r in chunk_sent if r.sent_copy_pending]
                if pending and choice.mailbox is not None:
                    # The Sent copies of this chunk are filed while the next chunk is submitted.
                    copier = copier or _SentCopier(choice.mailbox)
                    copier.add(pending)
    finally:
        throttle.slot_release(choice.throttle_key, slot)
        fallback = copier.finish(sent) if copier is not None else False

    if fallback and choice.mailbox is not None:
        # No MULTIAPPEND on this server: one APPEND per message.
        sent_copies_file(mailbox=choice.mailbox, outbound_ids=[r.pk for r in sent if r.sent_copy_pending])
    _after_send(sent)
    return results


class _SentCopier:
    """Files the Sent copies of a batch on an IMAP session in a thread of its own, one MULTIAPPEND
    (RFC 3502) per chunk, while the main thread goes on submitting over SMTP: most of a copy's cost
    is the IMAP server storing it, which then overlaps the SMTP exchange.

    The thread only talks IMAP; finish() marks the filed copies in the caller's thread, so the
    thread never waits on a row lock of the caller's transaction. A crash in between leaves them
    pending, and the sweep files them after searching the folder first.
    """

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.jobs: queue.SimpleQueue[list[tuple[int, bytes, datetime | None]] | None] = queue.SimpleQueue()
        self.filed: list[int] = []
        self.fallback = False  # the server has no MULTIAPPEND: the caller files them one by one
        context = contextvars.copy_context()  # the log context (tenant, mailbox) of the caller
        self.thread = threading.Thread(target=context.run, args=(self._run,), name="sent-copies", daemon=True)
        self.thread.start()

    def add(self, rows: Sequence[OutboundMessage]) -> None:
        # Split as sent_copies_file does (100 messages or about 8 MB a command): one MULTIAPPEND
        # per send chunk would be one command of up to 100 messages with their attachments.
        for chunk in _append_chunks(list(rows)):
            self.jobs.put([(row.pk, bytes(row.raw or b""), row.sent_at) for row in chunk])

    def finish(self, sent: Sequence[OutboundMessage]) -> bool:
        """Wait for the copies queued so far and mark them filed (one UPDATE); True when the server
        has no MULTIAPPEND and the caller is to file them one by one."""
        self.jobs.put(None)
        self.thread.join()
        if self.filed:
            OutboundMessage.unscoped.filter(pk__in=self.filed).update(sent_copy_pending=False)
            filed = set(self.filed)
            for row in sent:
                if row.pk in filed:
                    row.sent_copy_pending = False
        return self.fallback

    def _run(self) -> None:
        from imapclient.imapclient import SEEN

        from .connections import imap_session

        try:
            with imap_session(self.mailbox) as client:
                if not client.has_capability("MULTIAPPEND"):
                    self.fallback = True
                    return
                folder = _sent_folder(client, self.mailbox)
                while (job := self.jobs.get()) is not None:
                    client.multiappend(folder, [{"msg": raw, "flags": (SEEN,), "date": at} for _, raw, at in job])
                    self.filed.extend(pk for pk, _, _ in job)
        except ProviderError as exc:
            log.warning("mailbox %s: sent copies not filed yet (%s: %s)", self.mailbox.pk, exc.stage, exc.message)
        except Exception:
            log.exception("mailbox %s: sent copies not filed yet", self.mailbox.pk)


_SEND_CHUNK = 100


def _reserve(
    choice: RouteChoice, rows: list[OutboundMessage], throttle: Throttle, clock: Clock,
    results: dict[int, DeliveryResult],
) -> list[OutboundMessage]:
    limits = choice.limits
    ready: list[OutboundMessage] = []
    for index, row in enumerate(rows):
        wait = throttle.reserve(choice.throttle_key, limits, recipients=len(row.recipients))
        if wait:
            # Over the limit: this one and the rest wait in the queue; nothing is dropped.
            for later in rows[index:]:
                _requeue(later.pk, wait=wait, clock=clock)
                results[later.pk] = DeliveryResult(Status.QUEUED, retry_in=wait)
            log.info("%s: throttled, %d message(s) wait %.0f s", choice.throttle_key, len(rows) - index, wait)
            break
        ready.append(row)
    return ready


def _record(
    choice: RouteChoice, rows: list[OutboundMessage], outcomes: list[_Outcome], clock: Clock,
    results: dict[int, DeliveryResult],
) -> list[OutboundMessage]:
    """Write each outcome to its row; returns the rows sent."""
    sent: list[OutboundMessage] = []
    auth_failure = ""
    copy_pending = (
        choice.kind == Route.MAILBOX
        and choice.mailbox is not None
        and not get_provider(choice.mailbox.provider).files_sent_copy
    )
    now = _now(clock)
    sent_by_note: dict[str, list[int]] = {}
    for row, outcome in zip(rows, outcomes, strict=True):
        if outcome.kind == "sent":
            sent_by_note.setdefault(outcome.text[:2000], []).append(row.pk)
            row.status, row.sent_at, row.sent_copy_pending = Status.SENT, now, copy_pending
            sent.append(row)
            results[row.pk] = DeliveryResult(Status.SENT, error=outcome.text)
            log.info("outbound %s sent via %s", row.pk, choice.kind)
            metrics.outbound_sent(route=choice.kind)
        elif outcome.kind == "auth":
            auth_failure = outcome.text
            error = f"not sent: the mailbox needs re-authorization ({outcome.text})"
            _fail(row.pk, error)
            results[row.pk] = DeliveryResult(Status.FAILED, error=error)
        elif outcome.kind == "untried":
            # The connection died on an earlier message of the batch: this one never reached the
            # server, so it costs no attempt (else a few drops fail mail that was never tried).
            _requeue(row.pk, wait=1.0, clock=clock, error=outcome.text)
            results[row.pk] = DeliveryResult(Status.QUEUED, retry_in=1.0, error=outcome.text)
        elif outcome.kind == "permanent" or row.attempts >= settings.OUTBOUND_MAX_ATTEMPTS:
            _fail(row.pk, outcome.text)
            results[row.pk] = DeliveryResult(Status.FAILED, error=outcome.text)
        else:
            wait = _backoff(row.attempts)
            _requeue(row.pk, wait=wait, clock=clock, error=outcome.text, count_attempt=True)
            results[row.pk] = DeliveryResult(Status.QUEUED, retry_in=wait, error=outcome.text)
            log.info("outbound %s: temporary failure, retry in %.0f s: %s", row.pk, wait, outcome.text[:300])
            metrics.outbound_retried()
    for note, ids in sent_by_note.items():  # one UPDATE for the chunk's sent rows (per refusal note)
        OutboundMessage.unscoped.filter(pk__in=ids, status=Status.SENDING).update(
            status=Status.SENT, sent_at=now, last_error=note, next_attempt_at=None, sent_copy_pending=copy_pending,
        )
    if auth_failure:
        _mark_needs_reauthorization(choice, auth_failure)
    return sent


def _after_send(sent: Sequence[OutboundMessage]) -> None:
    from .webhooks import webhooks_queue

    for outbound in sent:
        try:
            message_sent.send(sender=OutboundMessage, outbound=outbound)
        except Exception:
            log.exception("outbound %s: a message_sent receiver failed", outbound.pk)
    webhooks_queue(outbounds=sent, event="message.sent")


# ----------------------------------------------------------------------------- Sent folder


def _sent_folder(client: Any, mailbox: Mailbox) -> str:
    from imapclient.imapclient import SENT

    if mailbox.sent_folder:
        return mailbox.sent_folder
    found = client.find_special_folder(SENT)
    if found:
        return str(found)
    if not client.folder_exists("Sent"):
        client.create_folder("Sent")
    return "Sent"


def sent_copies_file(*, mailbox: Mailbox, outbound_ids: Sequence[int], search_first: bool = False) -> int:
    """APPEND the exact bytes sent to the mailbox's Sent folder, flagged \\Seen; returns how many
    were filed. search_first: skip those already there (recovery after an interruption)."""
    from imapclient.imapclient import SEEN

    from .connections import imap_session

    rows = list(
        OutboundMessage.unscoped.filter(pk__in=outbound_ids, status=Status.SENT, sent_copy_pending=True).order_by("id")
    )
    if not rows:
        return 0
    filed = 0
    try:
        with imap_session(mailbox) as client:
            folder = _sent_folder(client, mailbox)
            if not search_first and client.has_capability("MULTIAPPEND"):
                # One APPEND command for many messages (RFC 3502), then one UPDATE for them: one
                # round trip per message cost as much as the SMTP submission (bench/bench_send.py).
                # A MULTIAPPEND is all or nothing, so a failure leaves the whole chunk pending.
                for chunk in _append_chunks(rows):
                    client.multiappend(folder, [
                        {"msg": bytes(row.raw or b""), "flags": (SEEN,), "date": row.sent_at} for row in chunk
                    ])
                    OutboundMessage.unscoped.filter(pk__in=[row.pk for row in chunk]).update(sent_copy_pending=False)
                    filed += len(chunk)
                rows = []
            for row in rows:
                if search_first and _folder_has(client, folder, row.message_id):
                    pass
                else:
                    client.append(folder, bytes(row.raw or b""), flags=(SEEN,), msg_time=row.sent_at)
                    filed += 1
                OutboundMessage.unscoped.filter(pk=row.pk).update(sent_copy_pending=False)
    except ProviderError as exc:
        log.warning("mailbox %s: sent copy not filed yet (%s: %s)", mailbox.pk, exc.stage, exc.message)
    except Exception:
        log.exception("mailbox %s: sent copy not filed yet", mailbox.pk)
    return filed


def _append_chunks(
    rows: list[OutboundMessage], count: int = 100, size: int = 8 * 1024 * 1024
) -> Iterable[list[OutboundMessage]]:
    """At most `count` messages or about `size` bytes per MULTIAPPEND (one message alone if larger)."""
    chunk: list[OutboundMessage] = []
    total = 0
    for row in rows:
        length = len(row.raw or b"")
        if chunk and (len(chunk) >= count or total + length > size):
            yield chunk
            chunk, total = [], 0
        chunk.append(row)
        total += length
    if chunk:
        yield chunk


def _folder_has(client: Any, folder: str, message_id: str) -> bool:
    client.select_folder(folder, readonly=True)
    return bool(client.search(["HEADER", "Message-ID", message_id]))


def sent_folder_has(*, mailbox: Mailbox, message_id: str) -> bool:
    """Whether the mailbox's Sent folder holds a message with this Message-ID (UID SEARCH HEADER)."""
    from .connections import imap_session

    with imap_session(mailbox) as client:
        return _folder_has(client, _sent_folder(client, mailbox), message_id)


def _sent_folder_searchable(outbound: OutboundMessage) -> bool:
    mailbox = outbound.mailbox
    if outbound.route != Route.MAILBOX or mailbox is None:
        return False
    provider = get_provider(mailbox.provider)
    # IMAP/SMTP mailboxes log in to IMAP with the same password; Google and Microsoft only when
    # the mailbox was connected for reading (the grant then covers IMAP).
    return not provider.files_sent_copy or mailbox.reads


# ----------------------------------------------------------------------------- housekeeping


def outbound_recover_stale(*, clock: Clock | None = None) -> dict[str, int]:
    """Messages left SENDING by a worker that died. Where the Sent folder can be searched, look
    for the Message-ID first: found -> SENT; otherwise back to the queue."""
    clock = clock or time.time
    cutoff = _now(clock) - timedelta(seconds=settings.OUTBOUND_SENDING_TIMEOUT)
    counts = {"found_sent": 0, "requeued": 0, "unknown": 0}
    stale = OutboundMessage.unscoped.filter(status=Status.SENDING, claimed_at__lt=cutoff).select_related("mailbox")
    for row in stale[:200]:
        found = False
        if _sent_folder_searchable(row) and row.mailbox is not None:
            try:
                found = sent_folder_has(mailbox=row.mailbox, message_id=row.message_id)
            except Exception as exc:
                # Cannot tell now: leave it SENDING for the next pass rather than risk a duplicate.
                log.warning("outbound %s: Sent folder not searchable now (%s)", row.pk, exc)
                counts["unknown"] += 1
                continue
        if found:
            OutboundMessage.unscoped.filter(pk=row.pk, status=Status.SENDING, claimed_at=row.claimed_at).update(
                status=Status.SENT, sent_at=_now(clock), sent_copy_pending=False,
                last_error="found in the Sent folder after an interrupted delivery",
            )
            counts["found_sent"] += 1
        else:
            OutboundMessage.unscoped.filter(pk=row.pk, status=Status.SENDING, claimed_at=row.claimed_at).update(
                status=Status.QUEUED, claimed_at=None, next_attempt_at=_now(clock),
                last_error="delivery was interrupted; sending again",
            )
            counts["requeued"] += 1
    return counts


def outbound_due_ids(*, clock: Clock | None = None, limit: int = 500) -> list[int]:
    """Queued messages whose time has come, and ones queued over a minute ago whose task got lost."""
    now = _now(clock or time.time)
    return list(
        OutboundMessage.unscoped.filter(status=Status.QUEUED)
        .filter(
            Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lt=now - timedelta(minutes=1))
        )
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def sent_copies_pending_file() -> int:
    filed = 0
    mailbox_ids = set(
        OutboundMessage.unscoped.filter(status=Status.SENT, sent_copy_pending=True).values_list("mailbox_id", flat=True)
    )
    for mailbox in Mailbox.unscoped.filter(pk__in=mailbox_ids, status=Mailbox.Status.ACTIVE):
        ids = list(
            OutboundMessage.unscoped.filter(mailbox=mailbox, status=Status.SENT, sent_copy_pending=True)
            .values_list("id", flat=True)[:200]
        )
        filed += sent_copies_file(mailbox=mailbox, outbound_ids=ids, search_first=True)
    return filed


# ----------------------------------------------------------------------------- synchronous paths


def message_send_now(
    *, outbound: OutboundMessage, clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep,
    max_wait: float = 120.0,
) -> DeliveryResult:
    """Deliver a message queued with enqueue=False now, waiting out throttles and temporary
    failures up to max_wait seconds (the CLI and the Send test e-mail button). What is still
    QUEUED afterwards stays queued for the workers."""
    clock = clock or time.time
    deadline = clock() + max_wait
    while True:
        result = message_deliver(outbound_id=outbound.pk, clock=clock)
        if result.status != Status.QUEUED or result.retry_in is None or clock() + result.retry_in > deadline:
            return result
        sleep(result.retry_in)


def mailbox_send_test(*, mailbox: Mailbox, staff: Staff | None = None, to: str | None = None) -> DeliveryResult:
    """The Send test e-mail button: a short message through the mailbox (to its owner unless `to`
    is given), sent now. Raises SendRefused when policy refuses it; what is still queued after a
    short wait (throttle, temporary failure) is left to the workers."""
    outbound = message_queue(
        tenant=mailbox.tenant, staff=mailbox.staff, mailbox=mailbox,
        to=[to or mailbox.staff.email or mailbox.email_address],
        subject="Test e-mail from TMS",
        body_text=(
            f"This is a test e-mail sent by the TMS through {mailbox.email_address}.\n"
            "If you can read it, sending works. For IMAP/SMTP mailboxes a copy is in the Sent folder.\n"
        ),
        related=f"mailbox:{mailbox.public_id}", enqueue=False,
    )
    result = message_send_now(outbound=outbound, max_wait=20.0)
    if result.status == Status.QUEUED:
        outbound_id, countdown = outbound.pk, result.retry_in
        transaction.on_commit(lambda: outbound_enqueue(outbound_id, countdown))
    return result
