"""Shipments, their activity log, customers and contacts.

Once-only is the database's job here too: a shipment points at its source message one-to-one, and
an inbound message adds at most one activity per shipment (a conditional unique constraint), so a
message processed twice cannot create twice whatever the code paths do.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower, Upper
from django.utils import timezone

from tms.accounts.scoping import TenantOwned


class Customer(TenantOwned):
    """A shipper or consignee company that sends us freight."""

    name = models.CharField(max_length=200)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint("tenant", Lower("name"), name="customer_name_unique_ci")]

    def __str__(self) -> str:
        return self.name

    @property
    def email_domains(self) -> list[str]:
        """Its domains (prefetch "domains" to read this for many customers in one query)."""
        return [d.domain for d in self.domains.all()]


class CustomerDomain(models.Model):
    """An e-mail domain that identifies a customer: unique per tenant, so a sender maps to one customer."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253)

    class Meta:
        ordering = ["domain"]
        constraints = [models.UniqueConstraint(fields=["tenant", "domain"], name="customer_domain_unique")]

    def __str__(self) -> str:
        return self.domain


class Contact(TenantOwned):
    """A person who mails us. Unknown senders become contacts; a contact may belong to a customer."""

    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(max_length=254)
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="contacts"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["name", "email"]
        constraints = [models.UniqueConstraint("tenant", Lower("email"), name="contact_email_unique_ci")]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


class ShipmentCounter(models.Model):
    """The last shipment sequence number of a tenant; locked (SELECT ... FOR UPDATE) to allocate."""

    tenant = models.OneToOneField("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    last_value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"tenant {self.tenant_id}: {self.last_value}"


class Status(models.TextChoices):
    QUOTE_REQUESTED = "quote_requested", "Quote requested"
    PICKUP_REQUESTED = "pickup_requested", "Pickup requested"
    BOOKED = "booked", "Booked"
    IN_TRANSIT = "in_transit", "In transit"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"


class Equipment(models.TextChoices):
    DRY_VAN = "dry_van", "Dry van"
    REEFER = "reefer", "Reefer"
    FLATBED = "flatbed", "Flatbed"
    STEP_DECK = "step_deck", "Step deck"
    LTL = "ltl", "LTL"
    POWER_ONLY = "power_only", "Power only"
    BOX_TRUCK = "box_truck", "Box truck"
    HOTSHOT = "hotshot", "Hotshot"
    CONTAINER = "container", "Container"


class Shipment(TenantOwned):
    Status = Status
    Equipment = Equipment

    # The tenant's prefix plus the zero-padded sequence, e.g. SHP-000123.
    number = models.CharField(max_length=32)
    sequence = models.PositiveBigIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUOTE_REQUESTED)
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="shipments"
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="shipments"
    )

    origin_city = models.CharField(max_length=100, blank=True)
    origin_state = models.CharField(max_length=3, blank=True)
    origin_postal_code = models.CharField(max_length=10, blank=True)
    origin_country = models.CharField(max_length=2, blank=True)
    destination_city = models.CharField(max_length=100, blank=True)
    destination_state = models.CharField(max_length=3, blank=True)
    destination_postal_code = models.CharField(max_length=10, blank=True)
    destination_country = models.CharField(max_length=2, blank=True)

    pickup_date = models.DateField(null=True, blank=True)
    delivery_date = models.DateField(null=True, blank=True)
    weight_lbs = models.PositiveIntegerField(null=True, blank=True)
    pieces = models.PositiveIntegerField(null=True, blank=True)
    equipment = models.CharField(max_length=16, choices=Equipment.choices, blank=True)
    commodity = models.CharField(max_length=200, blank=True)
    hazmat = models.BooleanField(default=False)
    bol_number = models.CharField("BOL number", max_length=64, blank=True)
    po_number = models.CharField("PO number", max_length=64, blank=True)
    pro_number = models.CharField("PRO number", max_length=64, blank=True)

    assigned_to = models.ForeignKey(
        "accounts.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="shipments"
    )
    # One message creates at most one shipment (the database says so, not a check).
    source_message = models.OneToOneField(
        "mailboxes.InboundMessage", on_delete=models.SET_NULL, null=True, blank=True, related_name="shipment"
    )
    # Its Message-ID: the same mail copied to two staff mailboxes (two InboundMessage rows) is
    # still one request, so it makes one shipment per tenant.
    source_message_key = models.CharField(max_length=998, blank=True)
    extraction_confidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="shipment_number_unique"),
            models.UniqueConstraint(fields=["tenant", "sequence"], name="shipment_sequence_unique"),
            # The Message-ID first: the intake finds a batch's shipments by it one key at a time,
            # never through the tenant (tms.db.by_each_key).
            models.UniqueConstraint(
                fields=["source_message_key", "tenant"], condition=~Q(source_message_key=""),
                name="shipment_once_per_message_id",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="shipment_newest"),
            models.Index(fields=["tenant", "status"], name="shipment_status"),
            # documents.matching looks BOL/PO/PRO numbers up case-insensitively for every document
            # read: by index, not by a scan of the tenant's shipments (bench/README.md, ingest).
            models.Index(F("tenant"), Upper("bol_number"), name="shipment_bol_upper"),
            models.Index(F("tenant"), Upper("po_number"), name="shipment_po_upper"),
            models.Index(F("tenant"), Upper("pro_number"), name="shipment_pro_upper"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def origin(self) -> str:
        return place(self.origin_city, self.origin_state, self.origin_postal_code)

    @property
    def destination(self) -> str:
        return place(self.destination_city, self.destination_state, self.destination_postal_code)

    @property
    def subject_tag(self) -> str:
        return f"[{self.number}]"

    @property
    def related_key(self) -> str:
        """How mailboxes.OutboundMessage.related names this shipment."""
        return f"shipment:{self.public_id}"


def place(city: str, state: str, postal_code: str) -> str:
    head = ", ".join(part for part in (city, state) if part)
    return " ".join(part for part in (head, postal_code) if part)


class Activity(TenantOwned):
    class Kind(models.TextChoices):
        EMAIL_IN = "email_in", "E-mail received"
        EMAIL_OUT = "email_out", "E-mail sent"
        NOTE = "note", "Note"
        DOCUMENT = "document", "Document"
        STATUS_CHANGE = "status_change", "Status change"

    # No index of its own: activity_timeline (shipment, created_at) and the unique constraints
    # below start with it, and each index is written by every activity the intake inserts.
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="activities", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        "accounts.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    inbound_message = models.ForeignKey(
        "mailboxes.InboundMessage", on_delete=models.SET_NULL, null=True, blank=True, related_name="activities"
    )
    outbound_message = models.ForeignKey(
        "mailboxes.OutboundMessage", on_delete=models.SET_NULL, null=True, blank=True, related_name="activities"
    )
    # The Message-ID of the mail it records: a copy of the same mail in another staff mailbox
    # adds nothing to a shipment that already has it.
    message_key = models.CharField(max_length=998, blank=True)
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta(TenantOwned.Meta):
        verbose_name_plural = "activities"
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["shipment", "inbound_message"],
                condition=Q(inbound_message__isnull=False),
                name="activity_once_per_inbound_message",
            ),
            models.UniqueConstraint(
                fields=["shipment", "outbound_message"],
                condition=Q(outbound_message__isnull=False),
                name="activity_once_per_outbound_message",
            ),
            models.UniqueConstraint(
                fields=["shipment", "message_key"], condition=~Q(message_key=""),
                name="activity_once_per_message_id",
            ),
        ]
        indexes = [models.Index(fields=["shipment", "created_at"], name="activity_timeline")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.shipment_id}"


class FiledMessage(TenantOwned):
    """An inbound message filed against its sender (a contact) and so their customer: the customer
    page's archive of mail. One row per message."""

    inbound_message = models.OneToOneField(
        "mailboxes.InboundMessage", on_delete=models.CASCADE, related_name="filing"
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="filed_messages")
    # No index of its own: filed_by_customer (customer, -created_at) starts with it.
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="filed_messages",
        db_index=False,
    )
    category = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="filed_by_customer")]
