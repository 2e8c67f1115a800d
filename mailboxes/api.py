"""Mailbox API: tenant-scoped through TenantScopedViewSet; a staff member sees their own mailboxes,
a tenant admin the whole company's. Another tenant's mailbox is a 404. Secrets are write-only."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework import serializers as drf_serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tms.accounts.api import TenantScopedViewSet

from . import selectors, services
from .models import Mailbox, Provider
from .serializers import (
    CheckResultSerializer,
    MailboxCreateSerializer,
    MailboxEventSerializer,
    MailboxSerializer,
    MailboxUpdateSerializer,
)


def _drf_error(exc: ValidationError) -> drf_serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return drf_serializers.ValidationError(exc.message_dict)
    return drf_serializers.ValidationError({"non_field_errors": exc.messages})


class MailboxViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    model = Mailbox
    serializer_class = MailboxSerializer

    def scope_queryset(self, qs: QuerySet[Any]) -> QuerySet[Any]:
        qs = qs.select_related("staff")
        if not self.staff.is_admin:
            qs = qs.filter(staff=self.staff)
        return qs.order_by("email_address")

    @extend_schema(request=MailboxCreateSerializer, responses={201: MailboxSerializer})
    def create(self, request: Request) -> Response:
        """Connect an IMAP/SMTP mailbox for the caller: logins are checked, then the authorization
        link is mailed to the address."""
        incoming = MailboxCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            mailbox = services.mailbox_connect_imap(staff=self.staff, actor=self.staff, **incoming.validated_data)
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(MailboxSerializer(mailbox).data, status=status.HTTP_201_CREATED)

    def _own(self) -> Mailbox:
        """Changing a mailbox is for its owner; others of the tenant (even admins) may only read it."""
        mailbox: Mailbox = self.get_object()
        if mailbox.staff_id != self.staff.pk:
            from rest_framework.exceptions import PermissionDenied

            raise PermissionDenied("Only the mailbox's owner can change it.")
        return mailbox

    @extend_schema(request=MailboxUpdateSerializer, responses={200: MailboxSerializer})
    def partial_update(self, request: Request, id: str | None = None) -> Response:
        mailbox = self._own()
        incoming = MailboxUpdateSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        password = data.pop("password", "")
        if mailbox.provider != Provider.IMAP:
            data = {k: v for k, v in data.items() if k in ("permission", "post_processing", "display_name",
                                                          "from_address")}
        try:
            mailbox = services.mailbox_update(mailbox=mailbox, actor=self.staff, password=password, **data)
        except ValidationError as exc:
            raise _drf_error(exc) from None
        return Response(MailboxSerializer(mailbox).data)

    def destroy(self, request: Request, id: str | None = None) -> Response:
        services.mailbox_remove(mailbox=self._own(), actor=self.staff)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: CheckResultSerializer})
    @action(detail=True, methods=["post"])
    def check(self, request: Request, id: str | None = None) -> Response:
        result = services.mailbox_check(self._own(), actor=self.staff)
        return Response(CheckResultSerializer(result.as_dict()).data)

    @extend_schema(responses={200: MailboxEventSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def events(self, request: Request, id: str | None = None) -> Response:
        mailbox = self.get_object()
        return Response(MailboxEventSerializer(selectors.mailbox_events(mailbox=mailbox), many=True).data)
