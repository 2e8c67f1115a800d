"""Factories: plain functions that go through the services, so tests build data as the app does."""

from __future__ import annotations

from mailboxes.models import Mailbox
from tms.accounts import services
from tms.accounts.models import Staff, Tenant


def make_tenant(slug: str = "acme", name: str = "Acme Logistics", prefix: str = "SHP-") -> Tenant:
    return services.tenant_create(slug=slug, name=name, shipment_prefix=prefix)


def make_staff(
    tenant: Tenant, email: str, name: str = "Staff Member", role: str = Staff.Role.STAFF, password: str | None = None
) -> Staff:
    return services.staff_create(tenant=tenant, email=email, name=name, role=role, password=password)


def make_mailbox(staff: Staff, email: str, provider: str = "imap", status: str = "active", **fields: object) -> Mailbox:
    """A mailbox row as if already connected (no servers contacted); fields override the defaults."""
    values: dict[str, object] = {
        "imap_host": "127.0.0.1", "imap_port": 993, "imap_security": "ssl", "smtp_host": "127.0.0.1",
        "smtp_port": 587, "smtp_security": "starttls", "username": email, "secret": "not-a-real-password",
        "permission": "send_and_read", "post_processing": "nothing",
    }
    values.update(fields)
    return Mailbox.objects.for_tenant(staff.tenant).create(
        staff=staff, provider=provider, email_address=email, status=status, **values
    )
