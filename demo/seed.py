"""The demo company and its logins (fixed: INTERFACES.md names them). Idempotent."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from tms.accounts import services
from tms.accounts.models import Staff, Tenant


@dataclass(frozen=True)
class Login:
    email: str
    password: str
    name: str
    role: str


TENANT_SLUG = "demo"
LOGINS = (
    Login("admin@demo.example", "demo-admin", "Dana Admin", Staff.Role.ADMIN),
    Login("dispatch@demo.example", "demo-dispatch", "Dev Dispatch", Staff.Role.STAFF),
    Login("ops@demo.example", "demo-ops", "Olive Ops", Staff.Role.STAFF),
)


@transaction.atomic
def seed() -> Tenant:
    tenant = Tenant.objects.filter(slug=TENANT_SLUG).first()
    if tenant is None:
        tenant = services.tenant_create(slug=TENANT_SLUG, name="Demo Freight Brokers")
    for login in LOGINS:
        staff = Staff.objects.for_tenant(tenant).filter(email=login.email).first()
        if staff is None:
            staff = services.staff_create(
                tenant=tenant, email=login.email, name=login.name, role=login.role, password=login.password
            )
        elif not staff.user.check_password(login.password):
            staff.user.set_password(login.password)
            staff.user.save(update_fields=["password"])
    return tenant
