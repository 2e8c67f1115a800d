"""Django admin: mailboxes per tenant, read-only where it matters, and never a secret on screen."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Mailbox, MailboxEvent

SECRET_FIELDS = ("secret", "access_token", "authorization_nonce")


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email_address", "tenant", "staff", "provider", "permission", "status", "is_default",
                    "last_read_at", "last_error_at")
    list_filter = ("tenant", "provider", "status", "permission")
    search_fields = ("email_address", "staff__email", "tenant__slug")
    list_select_related = ("tenant", "staff")
    # The secret, the access token and the link nonce are not form fields at all: they can be
    # neither seen nor edited here.
    exclude = SECRET_FIELDS
    readonly_fields = ("public_id", "tenant", "staff", "provider", "email_address", "username", "granted_scopes",
                       "access_token_expires_at", "authorized_at", "last_read_at", "last_polled_at",
                       "last_error", "last_error_at", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # connecting needs the owner's sign-in or the authorization link


@admin.register(MailboxEvent)
class MailboxEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("created_at", "tenant", "email_address", "kind", "actor")
    list_filter = ("tenant", "kind")
    search_fields = ("email_address",)
    list_select_related = ("tenant", "actor")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
