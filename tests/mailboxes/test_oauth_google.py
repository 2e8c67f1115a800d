"""Sign in with Google, end to end against the local OAuth server and Dovecot's oauth2 passdb."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from mailboxes import services
from mailboxes.connections import imap_session
from mailboxes.models import Mailbox, MailboxEvent
from mailboxes.providers import AuthorizationError
from tests.mailboxes.conftest import Servers, follow, local, messages_of, unique_address
from tests.testbed.oauth import OAuthError
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db


def raw_columns(mailbox: Mailbox) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, access_token FROM mailboxes_mailbox WHERE id = %s", [mailbox.pk])
        secret, access = cursor.fetchone()
    return secret, access


def connect(oauth_signin: Any, client: Client, email: str) -> Mailbox:
    response = oauth_signin(client, "google", email)
    assert response.status_code == 302 and response["Location"] == "/profile/"
    return Mailbox.unscoped.get(email_address=email)


def expire(mailbox: Mailbox) -> None:
    Mailbox.unscoped.filter(pk=mailbox.pk).update(access_token_expires_at=timezone.now() + timedelta(seconds=30))
    mailbox.refresh_from_db()


def test_it_connects_google_and_logs_in_to_imap_and_smtp_with_xoauth2(
    oauth_signin: Any, mail_settings: Servers, alice: Staff, alice_client: Client
) -> None:
    email = unique_address("g")
    mailbox = connect(oauth_signin, alice_client, email)

    assert mailbox.provider == "google" and mailbox.status == Mailbox.Status.ACTIVE
    assert mailbox.staff == alice and mailbox.is_default
    assert mailbox.permission == "send_and_read" and mailbox.post_processing == "archive"
    assert "https://mail.google.com/" in mailbox.granted_scopes
    assert mailbox.access_token_expires_at is not None
    assert mailbox.access_token_expires_at > timezone.now() + timedelta(minutes=30)
    # tokens are stored encrypted: the raw columns hold neither token
    raw_secret, raw_access = raw_columns(mailbox)
    assert mailbox.secret and mailbox.access_token
    assert mailbox.secret not in raw_secret and mailbox.access_token not in raw_access
    assert mailbox.access_token not in raw_secret
    kinds = set(MailboxEvent.unscoped.filter(mailbox=mailbox).values_list("kind", flat=True))
    assert {"connected", "authorized"} <= kinds

    with imap_session(mailbox) as imap:  # XOAUTH2 against Dovecot's oauth2 passdb
        assert imap.select_folder("INBOX")[b"UIDVALIDITY"]
    result = services.mailbox_check(mailbox)
    assert result.ok, result
    assert (result.imap, result.smtp) == ("ok", "ok")

    profile = alice_client.get("/profile/")
    assert email in profile.content.decode() and "Active" in profile.content.decode()


def test_it_refreshes_ahead_of_expiry_and_keeps_the_newest_refresh_token(
    oauth_signin: Any, mail_settings: Servers, alice_client: Client
) -> None:
    mailbox = connect(oauth_signin, alice_client, unique_address("g"))
    mail_settings.oauth.set_rotate_refresh(True)
    first_access, first_refresh = mailbox.access_token, mailbox.secret

    # still valid for an hour: no refresh
    assert services.mailbox_access_token(mailbox) == first_access
    expire(mailbox)  # inside the refresh margin
    second_access = services.mailbox_access_token(mailbox)
    mailbox.refresh_from_db()
    assert second_access != first_access and mailbox.access_token == second_access
    assert mailbox.secret != first_refresh  # the rotated refresh token was kept
    with pytest.raises(OAuthError) as retired:
        mail_settings.oauth.refresh(first_refresh)
    assert retired.value.error == "invalid_grant"

    expire(mailbox)  # a second refresh works only with the newest refresh token
    second_refresh = mailbox.secret
    services.mailbox_access_token(mailbox)
    mailbox.refresh_from_db()
    assert mailbox.secret not in (first_refresh, second_refresh)
    assert mail_settings.oauth.state()["token_requests"]["refresh_token"] == 3  # ours twice, the probe once
    assert mailbox.access_token_expires_at is not None
    assert mailbox.access_token_expires_at > timezone.now() + timedelta(minutes=30)
    with imap_session(mailbox) as imap:
        imap.noop()
    assert Mailbox.unscoped.get(pk=mailbox.pk).status == Mailbox.Status.ACTIVE


def test_it_moves_only_the_revoked_mailbox_to_needs_reauthorization(
    oauth_signin: Any, mail_settings: Servers, alice: Staff, alice_client: Client, bob_client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    revoked = connect(oauth_signin, alice_client, unique_address("g-revoked"))
    other = connect(oauth_signin, bob_client, unique_address("g-other"))
    mail_settings.smtp.clear()
    mail_settings.oauth.revoke_user(revoked.email_address)
    expire(revoked)
    expire(other)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(AuthorizationError):
        services.mailbox_access_token(revoked)
    revoked.refresh_from_db()
    assert revoked.status == Mailbox.Status.NEEDS_REAUTHORIZATION
    assert "invalid_grant" in revoked.last_error and revoked.access_token == ""
    assert MailboxEvent.unscoped.filter(mailbox=revoked, kind="needs_reauthorization").count() == 1
    mail = mail_settings.smtp.wait_for(lambda m: alice.email in m.rcpt_tos)
    assert revoked.email_address in mail.subject and "Email Assistant" in str(mail.message()["From"])

    # a check now reports the authentication stage and sends no second e-mail
    with django_capture_on_commit_callbacks(execute=True):
        result = services.mailbox_check(revoked)
    assert not result.ok and result.stage == "authentication"
    assert len([m for m in mail_settings.smtp.messages if alice.email in m.rcpt_tos]) == 1

    # the other mailbox is untouched and still refreshes and logs in
    services.mailbox_access_token(other)
    other.refresh_from_db()
    assert other.status == Mailbox.Status.ACTIVE
    assert services.mailbox_check(other).ok

    page = alice_client.get("/profile/").content.decode()
    assert "Needs re-authorization" in page and "needs to be reconnected" in page


def test_it_reconnects_a_mailbox_that_needs_reauthorization(
    oauth_signin: Any, mail_settings: Servers, alice_client: Client
) -> None:
    mailbox = connect(oauth_signin, alice_client, unique_address("g"))
    services.mailbox_mark_needs_reauthorization(mailbox, "revoked in a test")
    response = alice_client.post(f"/mailboxes/{mailbox.public_id}/reconnect/")
    assert response.status_code == 302
    callback = follow(mail_settings.certs.ca, response["Location"])
    assert alice_client.get(local(callback)).status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.status == Mailbox.Status.ACTIVE and services.mailbox_check(mailbox).ok


def test_it_refuses_an_account_other_than_the_mailbox_and_saves_nothing(
    oauth_signin: Any, mail_settings: Servers, alice_client: Client
) -> None:
    email, intruder = unique_address("g"), unique_address("someone-else")
    response = oauth_signin(alice_client, "google", email, account=intruder)
    assert response.status_code == 302
    page = alice_client.get("/profile/")
    text = " ".join(messages_of(page))
    assert f"signed in as {intruder}" in text and "Nothing was saved" in text
    assert not Mailbox.unscoped.filter(email_address__in=[email, intruder]).exists()


def test_it_refuses_a_wrong_or_reused_state(
    oauth_signin: Any, mail_settings: Servers, alice_client: Client, bob_client: Client
) -> None:
    email = unique_address("g")
    response = alice_client.post("/mailboxes/connect/", {
        "provider": "google", "connect": "google", "permission": "send", "post_processing": "nothing",
        "email_address": email})
    callback = local(follow(mail_settings.certs.ca, response["Location"]))

    forged = callback.replace("state=", "state=x")
    assert alice_client.get(forged).status_code == 302
    assert not Mailbox.unscoped.filter(email_address=email).exists()
    # another user's session does not know the state
    bob_client.get(callback)
    assert not Mailbox.unscoped.filter(email_address=email).exists()

    assert alice_client.get(callback).status_code == 302
    assert Mailbox.unscoped.filter(email_address=email, status="active").count() == 1
    page = alice_client.get(callback, follow=True)  # reused
    assert "not valid, has expired or was already used" in " ".join(messages_of(page))
    assert MailboxEvent.unscoped.filter(email_address=email, kind="authorized").count() == 1
