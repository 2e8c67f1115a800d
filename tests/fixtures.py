"""Fixtures for the domain: two tenants, their staff, logged-in clients.

Alice and Bob work for Acme (Alice is its admin); Charlie works for Globex and is the outsider
in every isolation test.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import make_staff, make_tenant
from tms.accounts.models import Staff, Tenant

PASSWORD = "correct-horse-battery"


@pytest.fixture
def acme(db: None) -> Tenant:
    return make_tenant("acme", "Acme Logistics")


@pytest.fixture
def globex(db: None) -> Tenant:
    return make_tenant("globex", "Globex Freight")


@pytest.fixture
def alice(acme: Tenant) -> Staff:
    return make_staff(acme, "alice@acme.test", "Alice Admin", role=Staff.Role.ADMIN, password=PASSWORD)


@pytest.fixture
def bob(acme: Tenant) -> Staff:
    return make_staff(acme, "bob@acme.test", "Bob Dispatch", password=PASSWORD)


@pytest.fixture
def charlie(globex: Tenant) -> Staff:
    return make_staff(globex, "charlie@globex.test", "Charlie Outsider", role=Staff.Role.ADMIN, password=PASSWORD)


def login(staff: Staff) -> Client:
    client = Client()
    client.force_login(staff.user)
    return client


@pytest.fixture
def alice_client(alice: Staff) -> Client:
    return login(alice)


@pytest.fixture
def bob_client(bob: Staff) -> Client:
    return login(bob)


@pytest.fixture
def charlie_client(charlie: Staff) -> Client:
    return login(charlie)
