"""Tenant scoping that fails closed.

Every tenant-owned model inherits TenantOwned. Its `objects` manager refuses to build a queryset
until it is given a tenant (`Model.objects.for_tenant(tenant)`); code that really needs to cross
tenants (platform admin, schedulers, migrations) says so with `Model.unscoped`, which is easy to
grep for. Django's own machinery (admin, related managers, cascades) uses `unscoped` through
Meta.default_manager_name / base_manager_name, so it keeps working.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django.db import models

if TYPE_CHECKING:
    from .models import Tenant

M = TypeVar("M", bound=models.Model)


class TenantScopeError(RuntimeError):
    """A tenant-owned model was queried without a tenant."""


class TenantQuerySet(models.QuerySet[M], Generic[M]):
    _scoped_tenant: Tenant | None = None

    def _clone(self) -> Any:
        clone = super()._clone()  # type: ignore[misc]
        clone._scoped_tenant = self._scoped_tenant
        return clone

    def create(self, **kwargs: Any) -> M:
        if self._scoped_tenant is not None:
            given = kwargs.setdefault("tenant", self._scoped_tenant)
            if given != self._scoped_tenant:
                raise TenantScopeError("create() with a tenant other than the scope's")
        return super().create(**kwargs)


class TenantManager(models.Manager[M], Generic[M]):
    def get_queryset(self) -> TenantQuerySet[M]:
        raise TenantScopeError(
            f"{self.model.__name__}.objects needs a tenant: use .for_tenant(tenant), "
            f"or {self.model.__name__}.unscoped where crossing tenants is intended"
        )

    def for_tenant(self, tenant: Tenant | None) -> TenantQuerySet[M]:
        if tenant is None or tenant.pk is None:
            raise TenantScopeError(f"{self.model.__name__}.objects.for_tenant() needs a saved tenant")
        qs: TenantQuerySet[M] = TenantQuerySet(self.model, using=self._db)
        qs = qs.filter(tenant=tenant)
        qs._scoped_tenant = tenant
        return qs


class TenantOwned(models.Model):
    """Base of every tenant-owned row: a tenant, a public UUID, and the fail-closed manager."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")

    objects: TenantManager[Any] = TenantManager()
    unscoped: models.Manager[Any] = models.Manager()

    class Meta:
        abstract = True
        default_manager_name = "unscoped"
        base_manager_name = "unscoped"
