"""API shapes. Objects are named by their public UUID (`id`); related objects by theirs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tms.accounts.models import Staff, Tenant

from .models import Activity, Contact, Customer, Shipment, Status


def _place(prefix: str) -> type[serializers.Serializer[Any]]:
    """A {city, state, postal_code, country} object over the shipment's <prefix>_* columns."""
    attrs: dict[str, Any] = {
        part: serializers.CharField(source=f"{prefix}_{part}", required=False, allow_blank=True, max_length=length)
        for part, length in (("city", 100), ("state", 3), ("postal_code", 10), ("country", 2))
    }
    attrs["Meta"] = type("Meta", (), {"ref_name": None})
    return type(f"{prefix.title()}Serializer", (serializers.Serializer,), attrs)


OriginSerializer = _place("origin")
DestinationSerializer = _place("destination")


@extend_schema_field(OpenApiTypes.UUID)
class TenantRelatedField(serializers.SlugRelatedField):  # type: ignore[type-arg]
    """A related object of the caller's tenant, by public id; another tenant's id is "not found"."""

    def __init__(self, model: type[Any], **kwargs: Any) -> None:
        self.model = model
        kwargs.setdefault("slug_field", "public_id")
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def get_queryset(self) -> Any:
        tenant: Tenant | None = self.context.get("tenant")
        if tenant is None:
            return self.model.unscoped.none()
        return self.model.objects.for_tenant(tenant)


class ShipmentSerializer(serializers.ModelSerializer[Shipment]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    customer = TenantRelatedField(Customer)
    contact = TenantRelatedField(Contact)
    assigned_to = TenantRelatedField(Staff)
    customer_name = serializers.CharField(source="customer.name", read_only=True, default=None)
    origin = OriginSerializer(source="*", required=False)
    destination = DestinationSerializer(source="*", required=False)
    source_message = serializers.UUIDField(source="source_message.public_id", read_only=True, default=None)
    status = serializers.ChoiceField(choices=Status.choices, required=False)

    class Meta:
        model = Shipment
        fields = [
            "id", "number", "status", "customer", "customer_name", "contact", "origin", "destination",
            "pickup_date", "delivery_date", "weight_lbs", "pieces", "equipment", "commodity", "hazmat",
            "bol_number", "po_number", "pro_number", "assigned_to", "source_message", "extraction_confidence",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "number", "source_message", "extraction_confidence", "created_at", "updated_at"]


class ActivitySerializer(serializers.ModelSerializer[Activity]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    shipment = serializers.UUIDField(source="shipment.public_id", read_only=True)
    shipment_number = serializers.CharField(source="shipment.number", read_only=True)
    actor = serializers.UUIDField(source="actor.public_id", read_only=True, default=None)
    actor_name = serializers.CharField(source="actor.name", read_only=True, default=None)
    inbound_message = serializers.UUIDField(source="inbound_message.public_id", read_only=True, default=None)
    outbound_message = serializers.UUIDField(source="outbound_message.public_id", read_only=True, default=None)
    subject = serializers.SerializerMethodField()

    class Meta:
        model = Activity
        fields = ["id", "shipment", "shipment_number", "kind", "actor", "actor_name", "inbound_message",
                  "outbound_message", "subject", "text", "created_at"]
        read_only_fields = fields

    def get_subject(self, obj: Activity) -> str | None:
        message = obj.inbound_message or obj.outbound_message
        return message.subject if message is not None else None


class NoteCreateSerializer(serializers.Serializer[Any]):
    shipment = TenantRelatedField(Shipment, allow_null=False, required=True)
    text = serializers.CharField(max_length=20000)


class CustomerSerializer(serializers.ModelSerializer[Customer]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    email_domains = serializers.ListField(child=serializers.CharField(max_length=253), required=False)

    class Meta:
        model = Customer
        fields = ["id", "name", "email_domains", "notes", "created_at"]
        read_only_fields = ["id", "created_at"]


class ContactSerializer(serializers.ModelSerializer[Contact]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    customer = TenantRelatedField(Customer)
    customer_name = serializers.CharField(source="customer.name", read_only=True, default=None)

    class Meta:
        model = Contact
        fields = ["id", "name", "email", "customer", "customer_name", "created_at"]
        read_only_fields = ["id", "created_at"]
