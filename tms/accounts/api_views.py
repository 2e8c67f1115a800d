from rest_framework import mixins

from .api import TenantScopedViewSet
from .models import Staff
from .serializers import StaffSerializer


class StaffViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The staff of the caller's company."""

    model = Staff
    serializer_class = StaffSerializer

    def scope_queryset(self, qs):  # type: ignore[no-untyped-def]
        return qs.select_related("user").order_by("name")
