"""Factories: plain functions that go through the services, so tests build data as the app does."""

from __future__ import annotations

from tms.accounts import services
from tms.accounts.models import Staff, Tenant


def make_tenant(slug: str = "acme", name: str = "Acme Logistics", prefix: str = "SHP-") -> Tenant:
    return services.tenant_create(slug=slug, name=name, shipment_prefix=prefix)


def make_staff(
    tenant: Tenant, email: str, name: str = "Staff Member", role: str = Staff.Role.STAFF, password: str | None = None
) -> Staff:
    return services.staff_create(tenant=tenant, email=email, name=name, role=role, password=password)
