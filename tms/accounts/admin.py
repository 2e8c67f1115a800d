from django.contrib import admin

from .models import Staff, Tenant


class StaffInline(admin.TabularInline):
    model = Staff
    fields = ("name", "email", "role", "user")
    raw_id_fields = ("user",)
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "active", "shipment_prefix", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("public_id", "created_at")
    inlines = [StaffInline]


@admin.register(Staff)
class StaffAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "tenant", "role")
    list_filter = ("tenant", "role")
    search_fields = ("name", "email")
    raw_id_fields = ("user",)
    readonly_fields = ("public_id", "created_at")
