"""The mailbox API: tenant-scoped, owner-only changes, secrets write-only."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from mailboxes.models import Mailbox
from tests.factories import make_mailbox
from tests.mailboxes.conftest import Servers, unique_address
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db

SECRET = "api-very-secret-password"


@pytest.fixture
def mailbox(alice: Staff) -> Mailbox:
    return make_mailbox(alice, "alice-api@example.test", secret=SECRET, access_token="api-very-secret-token")


def test_it_lists_and_shows_mailboxes_without_secrets(alice_client: Client, mailbox: Mailbox) -> None:
    listing = alice_client.get("/api/mailboxes/")
    assert listing.status_code == 200
    body = listing.json()
    assert [m["email_address"] for m in body["results"]] == ["alice-api@example.test"]
    detail = alice_client.get(f"/api/mailboxes/{mailbox.public_id}/")
    assert detail.json()["status_display"] == "Active"
    for response in (listing, detail):
        text = response.content.decode()
        assert "api-very-secret" not in text and '"secret"' not in text and '"password"' not in text


def test_it_hides_another_tenants_mailbox(charlie_client: Client, mailbox: Mailbox) -> None:
    assert charlie_client.get("/api/mailboxes/").json()["results"] == []
    base = f"/api/mailboxes/{mailbox.public_id}/"
    assert charlie_client.get(base).status_code == 404
    assert charlie_client.patch(base, data=json.dumps({"permission": "send"}),
                                content_type="application/json").status_code == 404
    assert charlie_client.post(base + "check/").status_code == 404
    assert charlie_client.get(base + "events/").status_code == 404
    assert charlie_client.delete(base).status_code == 404
    assert Mailbox.unscoped.filter(pk=mailbox.pk, permission="send_and_read").exists()


def test_it_shows_a_colleagues_mailbox_only_to_admins_and_lets_only_the_owner_change_it(
    alice: Staff, bob: Staff, alice_client: Client, bob_client: Client
) -> None:
    bobs = make_mailbox(bob, "bob-api@example.test")
    alices = make_mailbox(alice, "alice-api2@example.test")
    assert bob_client.get(f"/api/mailboxes/{alices.public_id}/").status_code == 404  # staff: own only
    assert alice_client.get(f"/api/mailboxes/{bobs.public_id}/").status_code == 200  # admin: the tenant's
    assert alice_client.delete(f"/api/mailboxes/{bobs.public_id}/").status_code == 403
    assert Mailbox.unscoped.filter(pk=bobs.pk).exists()


def test_it_updates_the_policy_and_takes_a_password_write_only(alice_client: Client, mailbox: Mailbox) -> None:
    Mailbox.unscoped.filter(pk=mailbox.pk).update(provider="google")
    response = alice_client.patch(f"/api/mailboxes/{mailbox.public_id}/",
                                  data=json.dumps({"post_processing": "delete", "display_name": "Ops"}),
                                  content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["post_processing"] == "delete"
    assert alice_client.delete(f"/api/mailboxes/{mailbox.public_id}/").status_code == 204
    assert not Mailbox.unscoped.filter(pk=mailbox.pk).exists()


def test_it_connects_an_imap_mailbox_and_mails_the_link(
    mail_settings: Servers, alice_client: Client
) -> None:
    email = unique_address("api")
    mail_settings.dovecot.add_user(email, "api-pass-123")
    payload = {"email_address": email, "imap_host": "127.0.0.1", "imap_port": mail_settings.dovecot.imaps_port,
               "imap_security": "ssl", "smtp_host": "127.0.0.1", "smtp_port": mail_settings.dovecot.submission_port,
               "smtp_security": "starttls", "password": "api-pass-123"}
    bad = alice_client.post("/api/mailboxes/", data=json.dumps({**payload, "password": "nope"}),
                            content_type="application/json")
    assert bad.status_code == 400 and "authentication" in bad.content.decode()
    response = alice_client.post("/api/mailboxes/", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending_authorization"
    assert "api-pass-123" not in response.content.decode()
    mail_settings.smtp.wait_for(lambda m: email in m.rcpt_tos)
