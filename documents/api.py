"""REST API for documents: list, retrieve, download, match, ignore. Scoping is TenantScopedViewSet's:
another company's document is a 404 and never appears in a list. Writes go through the services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tms.accounts.api import TenantScopedViewSet

from . import selectors, services
from .models import Document
from .serializers import DocumentDetailSerializer, DocumentMatchSerializer, DocumentSerializer
from .views import download_response

DOCUMENT_FILTERS = [
    OpenApiParameter("match_state", OpenApiTypes.STR, description="matched, unmatched or ignored."),
    OpenApiParameter("status", OpenApiTypes.STR, description="pending, processed or failed."),
    OpenApiParameter("kind", OpenApiTypes.STR, description="bol, pod, invoice, rate_confirmation, ..."),
    OpenApiParameter("shipment", OpenApiTypes.STR, description="Only this shipment's documents (id or number)."),
]


@extend_schema_view(list=extend_schema(parameters=DOCUMENT_FILTERS))
class DocumentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The company's documents (attachments of mail), newest first."""

    model = Document
    queryset = Document.unscoped.none()  # for the schema generator only; get_queryset() scopes
    serializer_class = DocumentSerializer

    def get_serializer_class(self) -> type[drf_serializers.BaseSerializer[Any]]:
        return DocumentDetailSerializer if self.action == "retrieve" else DocumentSerializer

    def scope_queryset(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params if self.action == "list" else {}
        narrowed = selectors.document_list(
            tenant=self.staff.tenant, match_state=params.get("match_state", ""), status=params.get("status", ""),
            kind=params.get("kind", ""), shipment=params.get("shipment", ""),
        )
        if self.action == "retrieve":
            return narrowed.defer(None).defer("source_message__raw", "source_message__headers")
        return narrowed

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"], url_path="download", url_name="download")
    def download(self, request: Request, id: str | None = None) -> FileResponse:
        document = self.get_object()
        try:
            handle = selectors.document_open(document=document)
        except FileNotFoundError:
            raise Http404("This file was not kept.") from None
        return download_response(document, handle)

    @extend_schema(request=DocumentMatchSerializer, responses={200: DocumentSerializer})
    @action(detail=True, methods=["post"])
    def match(self, request: Request, id: str | None = None) -> Response:
        document = self.get_object()
        incoming = DocumentMatchSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        shipment = selectors.shipment_for_reference(tenant=self.staff.tenant, value=incoming.validated_data["shipment"])
        if shipment is None:
            raise drf_serializers.ValidationError({"shipment": ["No such shipment."]})
        try:
            services.document_match(document=document, shipment=shipment, staff=self.staff)
        except ValidationError as exc:
            raise drf_serializers.ValidationError(exc.message_dict) from None
        return Response(DocumentSerializer(self.get_object()).data)

    @extend_schema(request=None, responses={200: DocumentSerializer})
    @action(detail=True, methods=["post"])
    def ignore(self, request: Request, id: str | None = None) -> Response:
        document = self.get_object()
        services.document_ignore(document=document, staff=self.staff)
        return Response(DocumentSerializer(self.get_object()).data)
