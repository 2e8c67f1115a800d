"""The one base class every tenant-owned API view uses: scoping happens here and nowhere else."""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers, viewsets

from .models import Staff
from .permissions import IsStaffMember, IsTenantAdmin

__all__ = ["IsStaffMember", "IsTenantAdmin", "TenantScopedViewSet"]


class TenantScopedViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Querysets come from `model.objects.for_tenant(request's tenant)`; new rows get that tenant.

    Subclasses set `model` and may narrow the queryset in `scope_queryset`. Objects are addressed by
    their public UUID; a row of another tenant is simply not found (404, not 403).
    """

    model: type[models.Model]
    lookup_field = "public_id"
    lookup_url_kwarg = "id"

    @property
    def staff(self) -> Staff:
        return self.request._request.staff  # type: ignore[attr-defined,no-any-return]

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Query parameters go into filters unchecked; PostgreSQL refuses NUL in text, which surfaced as
        # a 500 (found by tests/reliability's schemathesis run, GET /api/activities/?kind=%00): a 400.
        if any("\x00" in key or "\x00" in value for key, value in request.query_params.items()):
            raise serializers.ValidationError({"query": "query parameters may not contain NUL characters"})

    def get_queryset(self) -> models.QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular inspecting, no request
            return self.model.unscoped.none()  # type: ignore[attr-defined,no-any-return]
        qs = self.model.objects.for_tenant(self.staff.tenant)  # type: ignore[attr-defined]
        return self.scope_queryset(qs)

    def scope_queryset(self, qs: models.QuerySet[Any]) -> models.QuerySet[Any]:
        return qs

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        serializer.save(tenant=self.staff.tenant)
