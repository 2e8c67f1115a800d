"""Platform admin: read-mostly views across tenants (Django admin uses the `unscoped` manager).
The files themselves are not linked here: downloads go through the tenant-checked view."""

from __future__ import annotations

from django.contrib import admin

from .models import Document, StoredFile


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("filename", "tenant", "kind", "status", "match_state", "shipment", "size", "created_at")
    list_filter = ("tenant", "status", "match_state", "kind")
    search_fields = ("filename", "sha256", "shipment__number")
    raw_id_fields = ("stored", "source_message", "shipment", "matched_by")
    readonly_fields = ("public_id", "sha256", "size", "content_type", "error", "processed_at", "created_at")
    exclude = ("extracted_text",)


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("sha256", "tenant", "size", "created_at")
    list_filter = ("tenant",)
    search_fields = ("sha256",)
    readonly_fields = ("public_id", "sha256", "size", "file", "created_at")
