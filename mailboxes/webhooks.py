"""The tenant's webhook: an HMAC-SHA256-signed JSON POST after each sent message.

This is where a company hooks "custom code after send" (what other systems offer as scripts).
The receiver checks `X-TMS-Signature: sha256=<hex>` = HMAC-SHA256(secret, "<timestamp>.<body>")
with the timestamp from `X-TMS-Timestamp` (reject old timestamps to stop replays).
The URL is user-supplied, so it goes through tms.net's private-address guard (SSRF), redirects are
not followed, and delivery is a Celery task retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tms.accounts.models import Tenant
from tms.net import NetError, resolve

from .models import OutboundMessage, TenantWebhook

log = logging.getLogger(__name__)
TIMEOUT = 10


class WebhookError(Exception):
    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary


def webhook_url_validate(url: str) -> None:
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.MAILBOX_ALLOW_PRIVATE_HOSTS else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise ValidationError("The webhook URL must be an https:// URL.")
    if parts.username or parts.password:
        raise ValidationError("Put no user name or password in the webhook URL; the signature authenticates.")
    try:
        resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except NetError as exc:
        raise ValidationError(f"The webhook URL cannot be used: {exc.message}.") from None


def webhook_save(*, tenant: Tenant, url: str, secret: str = "", active: bool = True) -> TenantWebhook | None:
    """Set the tenant's webhook; an empty URL removes it. The secret is kept when not given again."""
    existing: TenantWebhook | None = TenantWebhook.objects.for_tenant(tenant).first()
    if not url:
        if existing is not None:
            existing.delete()
        return None
    webhook_url_validate(url)
    if existing is None and len(secret) < 16:
        raise ValidationError("Choose a secret of at least 16 characters; the receiver checks signatures with it.")
    if secret and len(secret) < 16:
        raise ValidationError("The secret must be at least 16 characters long.")
    if existing is None:
        created: TenantWebhook = TenantWebhook.objects.for_tenant(tenant).create(url=url, secret=secret, active=active)
        return created
    existing.url, existing.active = url, active
    if secret:
        existing.secret = secret
    existing.save()
    return existing


def webhook_payload(*, outbound: OutboundMessage, event: str) -> dict[str, Any]:
    return {
        "event": event,
        "id": str(outbound.public_id),
        "message_id": outbound.message_id,
        "status": outbound.status,
        "route": outbound.route,
        "mailbox": str(outbound.mailbox.public_id) if outbound.mailbox else None,
        "from": outbound.from_address,
        "recipients": list(outbound.recipients),
        "subject": outbound.subject,
        "related": outbound.related,
        "sent_at": outbound.sent_at.isoformat() if outbound.sent_at else None,
    }


def webhook_sign(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_queue(*, outbound: OutboundMessage, event: str) -> None:
    """Enqueue the webhook call after commit, when the tenant has an active webhook."""
    webhooks_queue(outbounds=[outbound], event=event)


def webhooks_queue(*, outbounds: Sequence[OutboundMessage], event: str) -> None:
    """webhook_queue for many messages: one query per tenant, not per message (a sent batch)."""
    tenant_ids = {outbound.tenant_id for outbound in outbounds}
    if not tenant_ids:
        return
    hooked = set(
        TenantWebhook.unscoped.filter(tenant_id__in=tenant_ids, active=True).values_list("tenant_id", flat=True)
    )
    if not hooked:
        return
    for outbound in outbounds:
        if outbound.tenant_id in hooked:
            _enqueue_after_commit(outbound.pk, event)


def _enqueue_after_commit(outbound_id: int, event: str) -> None:
    from .tasks.send import webhook_deliver

    transaction.on_commit(lambda: webhook_deliver.delay(outbound_id, event))


def webhook_deliver(*, outbound_id: int, event: str, now: float | None = None) -> bool:
    """POST the signed event. False when there is nothing to do; WebhookError when it failed."""
    outbound = OutboundMessage.unscoped.select_related("mailbox").filter(pk=outbound_id).first()
    if outbound is None:
        return False
    hook: TenantWebhook | None = TenantWebhook.unscoped.filter(tenant_id=outbound.tenant_id, active=True).first()
    if hook is None:
        return False
    try:
        webhook_url_validate(hook.url)
    except ValidationError as exc:
        _record(hook, f"refused: {' '.join(exc.messages)}")
        raise WebhookError(" ".join(exc.messages), temporary=False) from None
    body = json.dumps(webhook_payload(outbound=outbound, event=event), separators=(",", ":")).encode()
    timestamp = int(now if now is not None else time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "TMS-Webhook/1",
        "X-TMS-Event": event,
        "X-TMS-Timestamp": str(timestamp),
        "X-TMS-Signature": webhook_sign(secret=hook.secret, timestamp=timestamp, body=body),
    }
    from .oauth import http_session

    try:
        with http_session() as session:
            response = session.post(hook.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        _record(hook, f"error: {exc.__class__.__name__}")
        raise WebhookError(f"{exc.__class__.__name__}", temporary=True) from None
    _record(hook, f"HTTP {response.status_code}")
    if 200 <= response.status_code < 300:
        log.info("webhook for outbound %s delivered (%s)", outbound_id, response.status_code)
        return True
    temporary = response.status_code >= 500 or response.status_code in (408, 429)
    raise WebhookError(f"HTTP {response.status_code}", temporary=temporary)


def _record(hook: TenantWebhook, status: str) -> None:
    TenantWebhook.unscoped.filter(pk=hook.pk).update(last_status=status[:200], last_delivery_at=timezone.now())
