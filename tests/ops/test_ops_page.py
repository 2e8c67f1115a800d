"""/ops/: unhealthy mailboxes across tenants, with their last error, for platform admins only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from mailboxes.models import Mailbox
from tests.factories import make_mailbox
from tms.accounts.models import Staff, Tenant


@pytest.fixture
def platform_admin_client(db: None) -> Client:
    user = get_user_model().objects.create_user("ops", "ops@platform.test", "ops-password-1", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def mailboxes(alice: Staff, charlie: Staff, acme: Tenant, globex: Tenant) -> dict[str, Mailbox]:
    now = timezone.now()
    boxes = {
        "healthy": make_mailbox(alice, "healthy@acme.test", last_polled_at=now, secret="healthy-secret-pw"),
        "error": make_mailbox(alice, "broken@acme.test", status="error", consecutive_failures=1,
                              last_error="smtp: 550 5.7.1 relaying denied", last_error_at=now),
        "reauth": make_mailbox(charlie, "revoked@globex.test", status="needs_reauthorization",
                               last_error="token refresh refused: invalid_grant", secret="reauth-secret-pw"),
        "failing": make_mailbox(charlie, "flaky@globex.test", consecutive_failures=5, last_polled_at=now,
                                last_error="IMAP: connection reset"),
        "stale": make_mailbox(alice, "stale@acme.test", last_polled_at=now - timedelta(hours=3)),
        "send-only": make_mailbox(alice, "sendonly@acme.test", permission="send",
                                  last_polled_at=now - timedelta(days=3)),
        "disabled": make_mailbox(alice, "off@acme.test", status="disabled", last_polled_at=now - timedelta(days=3)),
    }
    # created long ago and never polled: stale too
    never = make_mailbox(charlie, "never@globex.test")
    Mailbox.unscoped.filter(pk=never.pk).update(created_at=now - timedelta(hours=2))
    boxes["never"] = never
    return boxes


def test_it_lists_unhealthy_mailboxes_of_every_tenant_with_their_last_error(
    platform_admin_client: Client, mailboxes: dict[str, Mailbox],
) -> None:
    response = platform_admin_client.get("/ops/")
    assert response.status_code == 200
    page = response.content.decode()
    listed = {item.mailbox.pk for item in response.context["unhealthy"]}
    expected = {mailboxes[k].pk for k in ("error", "reauth", "failing", "stale", "never")}
    assert listed == expected
    for text in ("broken@acme.test", "revoked@globex.test", "smtp: 550 5.7.1 relaying denied",
                 "token refresh refused: invalid_grant", "5 failures in a row", "not polled for 3 h",
                 "never polled", "Acme Logistics", "Globex Freight", "Needs re-authorization"):
        assert text in page, text
    for absent in ("healthy@acme.test", "sendonly@acme.test", "off@acme.test", "healthy-secret-pw",
                   "reauth-secret-pw"):
        assert absent not in page, absent
    # worst first
    assert response.context["unhealthy"][0].mailbox.pk == mailboxes["failing"].pk


def test_it_says_so_when_all_is_well(platform_admin_client: Client) -> None:
    page = platform_admin_client.get("/ops/").content.decode()
    assert "All mailboxes are healthy." in page


def test_it_follows_the_thresholds_in_settings(
    platform_admin_client: Client, mailboxes: dict[str, Mailbox], settings: Any,
) -> None:
    settings.OPS_FAILURE_THRESHOLD = 10
    settings.OPS_STALE_POLL_MINUTES = 600
    listed = {item.mailbox.pk for item in platform_admin_client.get("/ops/").context["unhealthy"]}
    assert listed == {mailboxes["error"].pk, mailboxes["reauth"].pk}


def test_it_is_for_platform_admins_only(
    client: Client, alice_client: Client, bob_client: Client, charlie_client: Client, mailboxes: dict[str, Mailbox],
) -> None:
    anonymous = client.get("/ops/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    # tenant admins (alice of Acme, charlie the outsider of Globex) and staff are not platform admins
    for tenant_user in (alice_client, bob_client, charlie_client):
        response = tenant_user.get("/ops/")
        assert response.status_code == 403
        assert b"broken@acme.test" not in response.content and b"revoked@globex.test" not in response.content
