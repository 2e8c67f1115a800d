"""REST API for shipments, activities, customers and contacts. Scoping is TenantScopedViewSet's:
another company's object is a 404 and never appears in a list. Writes go through the services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework import serializers as drf_serializers
from rest_framework.request import Request
from rest_framework.response import Response

from tms.accounts.api import TenantScopedViewSet

from . import selectors, services
from .models import Activity, Contact, Customer, CustomerDomain, Shipment
from .serializers import (
    ActivitySerializer,
    ContactSerializer,
    CustomerSerializer,
    NoteCreateSerializer,
    ShipmentSerializer,
)


def _drf_error(exc: ValidationError) -> drf_serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return drf_serializers.ValidationError(exc.message_dict)
    return drf_serializers.ValidationError({"non_field_errors": exc.messages})


class _Scoped(TenantScopedViewSet):
    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "tenant": self.staff.tenant}


SHIPMENT_FILTERS = [
    OpenApiParameter("status", OpenApiTypes.STR, description="Only shipments with this status."),
    OpenApiParameter("customer", OpenApiTypes.UUID, description="Only this customer's shipments."),
    OpenApiParameter("mine", OpenApiTypes.BOOL, description="Only shipments assigned to the caller."),
    OpenApiParameter("q", OpenApiTypes.STR, description="Search by number, city, or BOL/PO/PRO number."),
]


@extend_schema_view(list=extend_schema(parameters=SHIPMENT_FILTERS))
class ShipmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _Scoped):
    """The company's shipments, newest first."""

    model = Shipment
    queryset = Shipment.unscoped.none()  # for the schema generator only; get_queryset() scopes
    serializer_class = ShipmentSerializer

    def scope_queryset(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        qs = qs.select_related("customer", "contact", "assigned_to", "source_message").defer(
            "source_message__raw", "source_message__headers"
        )
        if self.action == "list":
            params = self.request.query_params
            filters = selectors.ShipmentFilters(
                mine=params.get("mine", "").lower() in ("1", "true", "yes"),
                status=params.get("status", ""), customer=params.get("customer", ""), q=params.get("q", ""),
            )
            narrowed = selectors.shipment_list(tenant=self.staff.tenant, staff=self.staff, filters=filters)
            qs = qs.filter(pk__in=narrowed.values("pk"))
        return qs.order_by("-created_at", "-id")

    def create(self, request: Request) -> Response:
        incoming = self.get_serializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        try:
            shipment = services.shipment_create(
                tenant=self.staff.tenant, status=data.pop("status", Shipment.Status.QUOTE_REQUESTED),
                assigned_to=data.pop("assigned_to", None), customer=data.pop("customer", None),
                contact=data.pop("contact", None), fields=data, actor=self.staff,
            )
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=shipment.pk)).data,
                        status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, id: str | None = None) -> Response:
        shipment = self.get_object()
        incoming = self.get_serializer(shipment, data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        try:
            services.shipment_update(shipment=shipment, actor=self.staff, changes=dict(incoming.validated_data))
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(self.get_serializer(self.get_object()).data)


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("shipment", OpenApiTypes.UUID, description="Only this shipment's activities."),
    OpenApiParameter("kind", OpenApiTypes.STR, description="Only activities of this kind."),
]))
class ActivityViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _Scoped):
    """What happened on the company's shipments, newest first. POST adds a note."""

    model = Activity
    queryset = Activity.unscoped.none()  # for the schema generator only; get_queryset() scopes
    serializer_class = ActivitySerializer

    def scope_queryset(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params if self.action == "list" else {}
        return selectors.activity_list(
            tenant=self.staff.tenant, shipment=params.get("shipment", ""), kind=params.get("kind", "")
        )

    @extend_schema(request=NoteCreateSerializer, responses={201: ActivitySerializer})
    def create(self, request: Request) -> Response:
        incoming = NoteCreateSerializer(data=request.data, context=self.get_serializer_context())
        incoming.is_valid(raise_exception=True)
        try:
            activity = services.activity_note_add(
                shipment=incoming.validated_data["shipment"], actor=self.staff, text=incoming.validated_data["text"]
            )
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=activity.pk)).data,
                        status=status.HTTP_201_CREATED)


class CustomerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _Scoped):
    """The company's customers and the e-mail domains that identify them."""

    model = Customer
    queryset = Customer.unscoped.none()  # for the schema generator only; get_queryset() scopes
    serializer_class = CustomerSerializer

    def scope_queryset(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        return qs.prefetch_related(Prefetch("domains", queryset=CustomerDomain.objects.order_by("domain"))) \
            .order_by("name", "id")

    def create(self, request: Request) -> Response:
        incoming = self.get_serializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            customer = services.customer_create(tenant=self.staff.tenant, **incoming.validated_data)
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=customer.pk)).data,
                        status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, id: str | None = None) -> Response:
        customer = self.get_object()
        incoming = self.get_serializer(customer, data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        try:
            services.customer_update(customer=customer, **incoming.validated_data)
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(self.get_serializer(self.get_object()).data)


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("customer", OpenApiTypes.UUID, description="Only this customer's contacts."),
    OpenApiParameter("q", OpenApiTypes.STR, description="Search by name or e-mail address."),
]))
class ContactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _Scoped):
    """People who mail the company; unknown senders are added on their first message."""

    model = Contact
    queryset = Contact.unscoped.none()  # for the schema generator only; get_queryset() scopes
    serializer_class = ContactSerializer

    def scope_queryset(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        if self.action == "list":
            params = self.request.query_params
            return selectors.contact_list(tenant=self.staff.tenant, customer=params.get("customer", ""),
                                          q=params.get("q", ""))
        return qs.select_related("customer")

    def create(self, request: Request) -> Response:
        incoming = self.get_serializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            contact = services.contact_create(tenant=self.staff.tenant, **incoming.validated_data)
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=contact.pk)).data,
                        status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, id: str | None = None) -> Response:
        contact = self.get_object()
        incoming = self.get_serializer(contact, data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        if "email" in data and data["email"].lower() != contact.email.lower():
            raise drf_serializers.ValidationError({"email": "a contact's address cannot change; add a new contact"})
        changes: dict[str, Any] = {}
        if "name" in data:
            changes["name"] = data["name"]
        if "customer" in data:
            changes["customer"] = data["customer"]
        try:
            services.contact_update(contact=contact, **changes)
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(self.get_serializer(self.get_object()).data)
