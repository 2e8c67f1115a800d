from __future__ import annotations

import pytest

from tms.accounts.models import Staff, Tenant
from tms.accounts.scoping import TenantScopeError


def test_it_refuses_to_query_tenant_owned_rows_without_a_tenant(alice: Staff) -> None:
    with pytest.raises(TenantScopeError):
        list(Staff.objects.all())
    with pytest.raises(TenantScopeError):
        Staff.objects.filter(email=alice.email)
    with pytest.raises(TenantScopeError):
        Staff.objects.for_tenant(None)


def test_it_returns_only_the_given_tenants_rows(alice: Staff, bob: Staff, charlie: Staff, acme: Tenant,
                                                 globex: Tenant) -> None:
    assert set(Staff.objects.for_tenant(acme)) == {alice, bob}
    assert list(Staff.objects.for_tenant(globex)) == [charlie]
    assert not Staff.objects.for_tenant(acme).filter(pk=charlie.pk).exists()


def test_it_creates_rows_in_the_scoped_tenant_only(acme: Tenant, globex: Tenant, alice: Staff) -> None:
    qs = Staff.objects.for_tenant(globex)
    with pytest.raises(TenantScopeError):
        qs.create(tenant=acme, user=alice.user, name="x", email="x@acme.test")


def test_it_lets_explicit_cross_tenant_code_use_unscoped(alice: Staff, charlie: Staff) -> None:
    assert Staff.unscoped.filter(pk__in=[alice.pk, charlie.pk]).count() == 2
