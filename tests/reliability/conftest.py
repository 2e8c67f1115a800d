"""Fixtures of the reliability suite: acme's world (one of everything), charlie's authenticated cookies."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.reliability.support import World, acme_world
from tms.accounts.models import Staff, Tenant


@pytest.fixture
def world(acme: Tenant, alice: Staff, bob: Staff, settings: Any) -> World:
    settings.REDIS_URL = ""
    return acme_world(acme, alice, bob)


@pytest.fixture
def charlie_session(charlie: Staff) -> dict[str, dict[str, str]]:
    """Charlie's session cookie and a CSRF cookie/header pair, for calls outside the test client."""
    client = Client()
    client.force_login(charlie.user)
    csrf = "c" * 32
    return {"cookies": {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf},
            "headers": {"X-CSRFToken": csrf}}
