"""The demo company, its logins and a few shipments (fixed: INTERFACES.md names the logins). Idempotent.

The shipments have known numbers (SHP-000101..103) because the sample mail in demo/mail/ refers
to them: a status question, a signed BOL (matched by its BOL number), a POD and an appointment.
The mail's quote and pickup requests then make new shipments, numbered after these.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from shipments import services as shipment_services
from shipments.models import Contact, Customer, Shipment, Status
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
# The staff member whose mailbox the demo connects to its local mail servers.
MAILBOX_OWNER = "dispatch@demo.example"


@dataclass(frozen=True)
class DemoCustomer:
    name: str
    domain: str
    contact_email: str
    contact_name: str


@dataclass(frozen=True)
class DemoShipment:
    sequence: int
    status: str
    customer: str
    days_from_today: int  # pickup date
    fields: dict[str, Any]


CUSTOMERS = (
    DemoCustomer("Lakeshore Appliance Co.", "lakeshoreappliance.example", "kosei@lakeshoreappliance.example",
                 "Karen Osei"),
    DemoCustomer("Peachtree Home Goods", "peachtreehome.example", "orders@peachtreehome.example", "Luis Ortega"),
    DemoCustomer("Sierra Outdoor Supply", "sierraoutdoor.example", "shipping@sierraoutdoor.example", "Amy Chen"),
)
SHIPMENTS = (
    DemoShipment(101, Status.IN_TRANSIT, "Lakeshore Appliance Co.", 0, {
        "origin": {"city": "Chicago", "state": "IL", "postal_code": "60632", "country": "US"},
        "destination": {"city": "Columbus", "state": "OH", "postal_code": "43207", "country": "US"},
        "weight_lbs": 31200, "pieces": 24, "equipment": "dry_van", "commodity": "front-load washers",
        "bol_number": "5521907", "po_number": "88123-01",
    }),
    DemoShipment(102, Status.IN_TRANSIT, "Peachtree Home Goods", -2, {
        "origin": {"city": "Dallas", "state": "TX", "postal_code": "75212", "country": "US"},
        "destination": {"city": "Atlanta", "state": "GA", "postal_code": "30336", "country": "US"},
        "weight_lbs": 16400, "pieces": 18, "equipment": "dry_van", "commodity": "patio furniture",
        "pro_number": "RT-33817",
    }),
    DemoShipment(103, Status.BOOKED, "Sierra Outdoor Supply", 2, {
        "origin": {"city": "Sacramento", "state": "CA", "postal_code": "95811", "country": "US"},
        "destination": {"city": "Reno", "state": "NV", "postal_code": "89502", "country": "US"},
        "weight_lbs": 9800, "pieces": 14, "equipment": "dry_van", "commodity": "camping gear",
        "po_number": "SO-44810",
    }),
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
    seed_shipments(tenant=tenant)
    return tenant


def seed_shipments(*, tenant: Tenant) -> None:
    """The customers and the three shipments the sample mail refers to; what exists is left as it is."""
    customers: dict[str, Customer] = {}
    for item in CUSTOMERS:
        customer = Customer.objects.for_tenant(tenant).filter(name__iexact=item.name).first()
        if customer is None:
            customer = shipment_services.customer_create(tenant=tenant, name=item.name, email_domains=[item.domain])
        customers[item.name] = customer
        if not Contact.objects.for_tenant(tenant).filter(email__iexact=item.contact_email).exists():
            shipment_services.contact_create(tenant=tenant, email=item.contact_email, name=item.contact_name,
                                             customer=customer)
    owner = Staff.objects.for_tenant(tenant).filter(email=MAILBOX_OWNER).first()
    today = timezone.localdate()
    for planned in SHIPMENTS:
        if Shipment.objects.for_tenant(tenant).filter(sequence=planned.sequence).exists():
            continue
        customer = customers[planned.customer]
        contact = Contact.objects.for_tenant(tenant).filter(customer=customer).order_by("pk").first()
        fields = {**planned.fields, "pickup_date": today + dt.timedelta(days=planned.days_from_today)}
        shipment_services.shipment_create(
            tenant=tenant, status=planned.status, assigned_to=owner, customer=customer, contact=contact,
            fields=fields, sequence=planned.sequence, note="Demo shipment (demo/seed.py).",
        )
