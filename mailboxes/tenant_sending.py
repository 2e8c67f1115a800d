"""The company's sending mailbox: one Microsoft 365 mailbox for the tenant's system mail.

A tenant admin names the Microsoft Entra directory (tenant) ID and the sending address, then grants
admin consent through Microsoft's authorization endpoint of that directory (prompt=admin_consent,
signed in as the sending mailbox). The refresh token is kept encrypted; access tokens are
refreshed when needed and the newest refresh token always replaces the old one (Microsoft
rotates them). SMTP AUTH XOAUTH2 then submits as the sending address.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tms.accounts.models import Tenant

from .models import TenantSendingMailbox
from .providers import AuthorizationError, ProviderError

SCOPES = ["https://outlook.office.com/SMTP.Send", "offline_access", "openid", "email"]
_DIRECTORY = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[a-z0-9.-]+\.[a-z]{2,}"
)
HTTP_TIMEOUT = 20


def tenant_sending_get(*, tenant: Tenant) -> TenantSendingMailbox:
    found, _ = TenantSendingMailbox.objects.for_tenant(tenant).get_or_create(tenant=tenant)
    return found


def _authority(directory_id: str) -> str:
    """MICROSOFT_AUTHORITY with its last segment ("common") replaced by the directory."""
    base = settings.MICROSOFT_AUTHORITY.rstrip("/").rsplit("/", 1)[0]
    return f"{base}/{directory_id}"


def tenant_sending_update(
    *, tenant: Tenant, kind: str, directory_id: str = "", sending_address: str = ""
) -> TenantSendingMailbox:
    """Set the company's sending mailbox. None disables it (and forgets the grant); a changed
    directory or address needs admin consent again."""
    company = tenant_sending_get(tenant=tenant)
    if kind == TenantSendingMailbox.Kind.NONE:
        company.kind, company.status = kind, TenantSendingMailbox.Status.DISABLED
        company.refresh_token = company.access_token = ""
        company.access_token_expires_at = None
        company.save()
        return company
    if kind != TenantSendingMailbox.Kind.MICROSOFT:
        raise ValidationError("Choose None or Microsoft 365.")
    directory_id = directory_id.strip().lower()
    sending_address = sending_address.strip().lower()
    errors: dict[str, str] = {}
    if not _DIRECTORY.fullmatch(directory_id):
        errors["directory_id"] = "Enter the directory (tenant) ID, a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47."
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", sending_address):
        errors["sending_address"] = "Enter the sending mailbox's e-mail address."
    if errors:
        raise ValidationError(errors)
    changed = (company.kind, company.directory_id, company.sending_address) != (kind, directory_id, sending_address)
    company.kind, company.directory_id, company.sending_address = kind, directory_id, sending_address
    if changed or company.status == TenantSendingMailbox.Status.DISABLED:
        company.status = TenantSendingMailbox.Status.PENDING_CONSENT
        company.refresh_token = company.access_token = ""
        company.access_token_expires_at = None
    company.save()
    return company


def tenant_sending_consent_url(*, company: TenantSendingMailbox, redirect_uri: str) -> tuple[str, str]:
    """(URL to send the admin's browser to, state to keep in the session)."""
    if company.kind != TenantSendingMailbox.Kind.MICROSOFT or not company.directory_id:
        raise ValidationError("Choose Microsoft 365 and enter the directory ID first.")
    if not (settings.MICROSOFT_CLIENT_ID and settings.MICROSOFT_CLIENT_SECRET):
        raise ValidationError("Signing in with Microsoft is not configured on this server.")
    state = secrets.token_urlsafe(24)
    query = urlencode({
        "client_id": settings.MICROSOFT_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "response_mode": "query",
        "scope": " ".join(SCOPES),
        "state": state,
        "prompt": "admin_consent",
        "login_hint": company.sending_address,
    })
    return f"{_authority(company.directory_id)}/oauth2/v2.0/authorize?{query}", state


def _token_request(company: TenantSendingMailbox, form: dict[str, str]) -> dict[str, Any]:
    from .oauth import http_session

    form = {**form, "client_id": settings.MICROSOFT_CLIENT_ID, "client_secret": settings.MICROSOFT_CLIENT_SECRET,
            "scope": " ".join(SCOPES)}
    try:
        with http_session() as session:
            response = session.post(f"{_authority(company.directory_id)}/oauth2/v2.0/token", data=form,
                                    timeout=HTTP_TIMEOUT)
        body: dict[str, Any] = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderError(f"Microsoft could not be reached: {exc.__class__.__name__}", permanent=False,
                            stage="connect") from None
    if response.status_code != 200 or "access_token" not in body:
        error = str(body.get("error") or f"HTTP {response.status_code}")
        if error in {"invalid_grant", "interaction_required", "invalid_client", "unauthorized_client"}:
            raise AuthorizationError(f"Microsoft refused: {error}")
        raise ProviderError(f"Microsoft token request failed: {error}", permanent=False, stage="authentication")
    return body


def _store_tokens(company: TenantSendingMailbox, body: dict[str, Any]) -> None:
    company.access_token = body["access_token"]
    company.access_token_expires_at = timezone.now() + timedelta(seconds=int(body.get("expires_in") or 3600))
    if body.get("refresh_token"):
        company.refresh_token = body["refresh_token"]  # always the newest: Microsoft retires the old one


def tenant_sending_consent_complete(*, tenant: Tenant, params: dict[str, str], state: str,
                                    redirect_uri: str) -> TenantSendingMailbox:
    """The callback: check the state, redeem the code; the mailbox becomes active."""
    company = tenant_sending_get(tenant=tenant)
    if not state or not secrets.compare_digest(params.get("state", ""), state):
        raise ValidationError("The consent answer does not belong to this session; start again.")
    if params.get("error"):
        company.status, company.last_error = TenantSendingMailbox.Status.ERROR, params.get("error", "")[:500]
        company.save()
        raise ValidationError(f"Consent was not given: {params.get('error_description') or params['error']}")
    if not params.get("code"):
        raise ValidationError("Microsoft sent no authorization code.")
    try:
        body = _token_request(company, {"grant_type": "authorization_code", "code": params["code"],
                                        "redirect_uri": redirect_uri})
    except ProviderError as exc:
        company.status, company.last_error = TenantSendingMailbox.Status.ERROR, exc.message
        company.save()
        raise ValidationError(exc.message) from None
    if not body.get("refresh_token"):
        raise ValidationError("Microsoft sent no refresh token (offline_access was not granted).")
    _store_tokens(company, body)
    company.status, company.consented_at, company.last_error = TenantSendingMailbox.Status.ACTIVE, timezone.now(), ""
    company.save()
    return company


def tenant_sending_access_token(*, tenant_mailbox_id: int) -> str:
    """A valid access token, refreshed when it expires within a minute. AuthorizationError when
    the grant is gone (the mailbox then needs re-authorization)."""
    with transaction.atomic():
        company = TenantSendingMailbox.unscoped.select_for_update().get(pk=tenant_mailbox_id)
        expires = company.access_token_expires_at
        if company.access_token and expires and expires > timezone.now() + timedelta(seconds=60):
            return str(company.access_token)
        if not company.refresh_token:
            raise AuthorizationError("the company sending mailbox has no grant; an admin must give consent")
        body = _token_request(company, {"grant_type": "refresh_token", "refresh_token": company.refresh_token})
        _store_tokens(company, body)
        company.save(update_fields=["access_token", "access_token_expires_at", "refresh_token", "updated_at"])
        return str(company.access_token)
