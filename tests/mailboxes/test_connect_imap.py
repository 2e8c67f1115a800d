"""IMAP/SMTP with a password: "Request Authorization Token", the emailed link, and what is refused."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core import signing
from django.test import Client

from mailboxes.models import Mailbox, MailboxEvent
from tests.mailboxes.conftest import Servers, link_in, unique_address
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(mail_settings: Servers) -> tuple[str, str]:
    email = unique_address("imap")
    mail_settings.dovecot.add_user(email, "s3cret-pass")
    return email, "s3cret-pass"


def form(mail_settings: Servers, email: str, secret: str, **changes: Any) -> dict[str, Any]:
    data = {
        "provider": "imap", "connect": "imap", "permission": "send_and_read", "post_processing": "archive",
        "email_address": email, "imap_host": "127.0.0.1", "imap_port": mail_settings.dovecot.imaps_port,
        "imap_security": "ssl", "smtp_host": "127.0.0.1", "smtp_port": mail_settings.dovecot.submission_port,
        "smtp_security": "starttls", "username": "", "password": secret,
    }
    data.update(changes)
    return data


def request_token(client: Client, mail_settings: Servers, email: str, secret: str, **changes: Any) -> Any:
    return client.post("/mailboxes/connect/", form(mail_settings, email, secret, **changes))


def test_it_mails_a_signed_link_that_activates_the_mailbox_once(
    mail_settings: Servers, account: tuple[str, str], alice: Staff, alice_client: Client
) -> None:
    email, password = account
    response = request_token(alice_client, mail_settings, email, password)
    assert response.status_code == 302, response.content.decode()[-3000:]
    mailbox = Mailbox.unscoped.get(email_address=email)
    assert mailbox.status == Mailbox.Status.PENDING_AUTHORIZATION and mailbox.staff == alice
    assert "Pending authorization" in alice_client.get("/profile/").content.decode()

    mail = mail_settings.smtp.wait_for(lambda m: email in m.rcpt_tos)
    assert str(mail.message()["From"]) == "Email Assistant <assistant@tms.localhost>"
    link = link_in(mail)

    page = alice_client.get(link, follow=True)
    assert page.status_code == 200
    mailbox.refresh_from_db()
    assert mailbox.status == Mailbox.Status.ACTIVE and mailbox.authorized_at is not None
    assert "Active" in page.content.decode()
    assert MailboxEvent.unscoped.filter(mailbox=mailbox, kind="authorized").count() == 1

    reused = alice_client.get(link)  # single use
    assert reused.status_code == 400 and "already been used" in reused.content.decode()
    assert MailboxEvent.unscoped.filter(mailbox=mailbox, kind="authorized").count() == 1


def test_it_refuses_someone_elses_expired_or_forged_link_and_changes_nothing(
    mail_settings: Servers, account: tuple[str, str], alice_client: Client, bob_client: Client,
    charlie_client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    email, password = account
    assert request_token(alice_client, mail_settings, email, password).status_code == 302
    link = link_in(mail_settings.smtp.wait_for(lambda m: email in m.rcpt_tos))

    for outsider in (bob_client, charlie_client):
        page = outsider.get(link)
        assert page.status_code == 400 and "another user" in page.content.decode()
    forged = alice_client.get(link[:-3] + "xx/")
    assert forged.status_code == 400 and "not valid" in forged.content.decode()

    later = time.time() + 25 * 3600  # the link is valid for 24 hours
    monkeypatch.setattr(signing.time, "time", lambda: later)  # type: ignore[attr-defined]
    expired = alice_client.get(link)
    assert expired.status_code == 400 and "expired" in expired.content.decode()
    monkeypatch.undo()
    assert Mailbox.unscoped.get(email_address=email).status == Mailbox.Status.PENDING_AUTHORIZATION

    # a new request replaces the link: the first one stops working, the new one works
    mail_settings.smtp.clear()
    assert alice_client.post(f"/mailboxes/{Mailbox.unscoped.get(email_address=email).public_id}/reconnect/"
                             ).status_code == 302
    newer = link_in(mail_settings.smtp.wait_for(lambda m: email in m.rcpt_tos))
    assert alice_client.get(link).status_code == 400
    assert alice_client.get(newer).status_code == 302
    assert Mailbox.unscoped.get(email_address=email).status == Mailbox.Status.ACTIVE


def test_it_checks_the_credentials_before_sending_anything(
    mail_settings: Servers, account: tuple[str, str], alice_client: Client
) -> None:
    email, _ = account
    response = request_token(alice_client, mail_settings, email, "wrong-password")
    assert response.status_code == 400
    text = response.content.decode()
    assert "did not work (authentication)" in text
    assert 'value="127.0.0.1"' in text  # the form keeps what was typed (but not the password)
    assert not Mailbox.unscoped.filter(email_address=email).exists()
    assert not [m for m in mail_settings.smtp.messages if email in m.rcpt_tos]


def test_it_checks_only_smtp_for_a_send_only_mailbox(
    mail_settings: Servers, account: tuple[str, str], alice_client: Client
) -> None:
    email, password = account
    response = request_token(alice_client, mail_settings, email, password, permission="send",
                             imap_host="", imap_port="")
    assert response.status_code == 302
    assert Mailbox.unscoped.get(email_address=email).permission == "send"


def test_it_refuses_private_hosts_unless_allowed(
    mail_settings: Servers, settings: Any, account: tuple[str, str], alice_client: Client
) -> None:
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = False
    email, password = account
    response = request_token(alice_client, mail_settings, email, password, imap_security="ssl")
    assert response.status_code == 400
    assert "private or local address" in response.content.decode()
    assert not Mailbox.unscoped.filter(email_address=email).exists()


@pytest.mark.parametrize(("changes", "message"), [
    ({"smtp_host": ""}, "This field is required"),
    ({"imap_port": "70000"}, "less than or equal to 65535"),
    ({"email_address": "not-an-address"}, "Enter a valid email address"),
    ({"password": ""}, "This field is required"),
    ({"connect": "google"}, "Choose the platform"),
])
def test_it_validates_the_form(
    mail_settings: Servers, alice_client: Client, changes: dict[str, str], message: str
) -> None:
    response = request_token(alice_client, mail_settings, "v@example.test", "pw", **changes)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'data-open="1"' in response.content.decode()  # the dialog opens again, with the errors
    assert not Mailbox.unscoped.exists()


def test_it_refuses_a_second_connection_of_an_active_address(
    mail_settings: Servers, account: tuple[str, str], alice_client: Client
) -> None:
    email, password = account
    request_token(alice_client, mail_settings, email, password)
    alice_client.get(link_in(mail_settings.smtp.wait_for(lambda m: email in m.rcpt_tos)))
    again = request_token(alice_client, mail_settings, email, password)
    assert again.status_code == 400 and "already connected" in again.content.decode()
    assert Mailbox.unscoped.filter(email_address=email).count() == 1
