"""The company's sending settings (tenant admins): the sending mailbox and the webhook."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from tms.accounts.views import tenant_admin_required

from . import tenant_sending, webhooks
from .models import TenantSendingMailbox, TenantWebhook

SESSION_STATE = "tenant_sending_consent_state"


class SendingMailboxForm(forms.Form):
    kind = forms.ChoiceField(label="Type", choices=TenantSendingMailbox.Kind.choices)
    directory_id = forms.CharField(label="Directory (tenant) ID", required=False, max_length=100)
    sending_address = forms.EmailField(label="Sending address", required=False)


class WebhookForm(forms.Form):
    url = forms.URLField(label="Webhook URL", required=False, max_length=500, assume_scheme="https",
                         help_text="Empty: no webhook. Called after each sent message.")
    secret = forms.CharField(label="Signing secret", required=False, widget=forms.PasswordInput,
                             help_text="At least 16 characters. Leave empty to keep the current one.")
    active = forms.BooleanField(label="Active", required=False, initial=True)


def _redirect_uri() -> str:
    return settings.SITE_URL + reverse("sending-settings-callback")


def _add_errors(form: forms.Form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
    else:
        for error in exc.messages:
            form.add_error(None, error)


@tenant_admin_required
def sending_settings(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    company = tenant_sending.tenant_sending_get(tenant=tenant)
    hook = TenantWebhook.objects.for_tenant(tenant).first()
    mailbox_form = SendingMailboxForm(initial={"kind": company.kind, "directory_id": company.directory_id,
                                               "sending_address": company.sending_address})
    webhook_form = WebhookForm(initial={"url": hook.url if hook else "", "active": hook.active if hook else True})
    if request.method == "POST" and request.POST.get("action") == "mailbox":
        mailbox_form = SendingMailboxForm(request.POST)
        if mailbox_form.is_valid():
            try:
                tenant_sending.tenant_sending_update(tenant=tenant, **mailbox_form.cleaned_data)
            except ValidationError as exc:
                _add_errors(mailbox_form, exc)
            else:
                messages.success(request, "Saved the company sending mailbox.")
                return redirect("sending-settings")
    elif request.method == "POST" and request.POST.get("action") == "webhook":
        webhook_form = WebhookForm(request.POST)
        if webhook_form.is_valid():
            try:
                webhooks.webhook_save(tenant=tenant, **webhook_form.cleaned_data)
            except ValidationError as exc:
                _add_errors(webhook_form, exc)
            else:
                messages.success(request, "Saved the webhook.")
                return redirect("sending-settings")
    return render(request, "mailboxes/sending_settings.html", {
        "company": company, "hook": hook, "mailbox_form": mailbox_form, "webhook_form": webhook_form,
    })


@tenant_admin_required
@require_POST
def sending_consent(request: HttpRequest) -> HttpResponse:
    company = tenant_sending.tenant_sending_get(tenant=request.tenant)  # type: ignore[attr-defined]
    try:
        url, state = tenant_sending.tenant_sending_consent_url(company=company, redirect_uri=_redirect_uri())
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("sending-settings")
    request.session[SESSION_STATE] = state
    return redirect(url)


@tenant_admin_required
def sending_consent_callback(request: HttpRequest) -> HttpResponse:
    state = request.session.pop(SESSION_STATE, "")
    params = {k: str(v) for k, v in request.GET.items()}
    try:
        tenant_sending.tenant_sending_consent_complete(
            tenant=request.tenant, params=params, state=state, redirect_uri=_redirect_uri(),  # type: ignore[attr-defined]
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Admin consent given: the company sending mailbox is active.")
    return redirect("sending-settings")
