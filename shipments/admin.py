"""Platform admin: read-mostly views across tenants (Django admin uses the `unscoped` manager)."""

from __future__ import annotations

from django.contrib import admin

from .models import Activity, Contact, Customer, CustomerDomain, FiledMessage, Shipment


class CustomerDomainInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CustomerDomain
    extra = 0


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "tenant", "created_at")
    list_filter = ("tenant",)
    search_fields = ("name", "domains__domain")
    inlines = [CustomerDomainInline]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email", "name", "customer", "tenant")
    list_filter = ("tenant",)
    search_fields = ("email", "name")
    raw_id_fields = ("customer",)


class ActivityInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Activity
    extra = 0
    fields = ("kind", "actor", "text", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("number", "tenant", "status", "customer", "origin", "destination", "assigned_to", "created_at")
    list_filter = ("tenant", "status")
    search_fields = ("number", "origin_city", "destination_city")
    raw_id_fields = ("customer", "contact", "assigned_to", "source_message")
    readonly_fields = ("number", "sequence", "source_message", "extraction_confidence")
    inlines = [ActivityInline]


@admin.register(FiledMessage)
class FiledMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("inbound_message", "contact", "customer", "category", "created_at")
    list_filter = ("tenant", "category")
    raw_id_fields = ("inbound_message", "contact", "customer")
