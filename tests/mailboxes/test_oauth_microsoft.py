"""Sign in with Microsoft (msal), end to end against the local OAuth server and Dovecot."""

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
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db


def connect(oauth_signin: Any, client: Client, email: str) -> Mailbox:
    response = oauth_signin(client, "microsoft", email, post_processing="mark_read")
    assert response.status_code == 302 and response["Location"] == "/profile/"
    return Mailbox.unscoped.get(email_address=email)


def expire(mailbox: Mailbox) -> None:
    Mailbox.unscoped.filter(pk=mailbox.pk).update(access_token_expires_at=timezone.now() - timedelta(seconds=1))
    mailbox.refresh_from_db()


def test_it_connects_microsoft_with_imap_and_smtp_scopes_and_logs_in(
    oauth_signin: Any, mail_settings: Servers, alice_client: Client
) -> None:
    start = alice_client.post("/mailboxes/connect/", {
        "provider": "microsoft", "connect": "microsoft", "permission": "send_and_read",
        "post_processing": "mark_read", "email_address": "x@example.test"})
    authorize = start["Location"]
    assert authorize.startswith(mail_settings.oauth.issuer)  # from the authority's discovery document
    for part in ("IMAP.AccessAsUser.All", "SMTP.Send", "offline_access", "code_challenge_method=S256"):
        assert part in authorize

    email = unique_address("ms")
    mailbox = connect(oauth_signin, alice_client, email)
    assert mailbox.provider == "microsoft" and mailbox.status == Mailbox.Status.ACTIVE
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in mailbox.granted_scopes
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, access_token FROM mailboxes_mailbox WHERE id = %s", [mailbox.pk])
        raw_secret, raw_access = cursor.fetchone()
    assert mailbox.secret not in raw_secret and mailbox.access_token not in raw_access

    with imap_session(mailbox) as imap:
        imap.select_folder("INBOX")
    result = services.mailbox_check(mailbox)  # IMAP XOAUTH2 and SMTP XOAUTH2 (STARTTLS submission)
    assert result.ok, result
    assert MailboxEvent.unscoped.filter(mailbox=mailbox, kind="check_ok").exists()


def test_it_keeps_the_rotated_refresh_token_every_time(
    oauth_signin: Any, mail_settings: Servers, alice_client: Client
) -> None:
    mailbox = connect(oauth_signin, alice_client, unique_address("ms"))
    mail_settings.oauth.set_rotate_refresh(True)
    seen = {mailbox.secret}
    for _ in range(3):  # each refresh retires the previous refresh token
        expire(mailbox)
        services.mailbox_access_token(mailbox)
        mailbox.refresh_from_db()
        assert mailbox.secret not in seen
        seen.add(mailbox.secret)
    assert services.mailbox_check(mailbox).ok
    assert mailbox.status == Mailbox.Status.ACTIVE


def test_it_marks_a_revoked_grant_without_touching_other_mailboxes(
    oauth_signin: Any, mail_settings: Servers, alice: Staff, alice_client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    revoked = connect(oauth_signin, alice_client, unique_address("ms-revoked"))
    kept = connect(oauth_signin, alice_client, unique_address("ms-kept"))
    mail_settings.oauth.revoke(revoked.secret)
    expire(revoked)
    expire(kept)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(AuthorizationError):
        services.mailbox_access_token(revoked)
    assert Mailbox.unscoped.get(pk=revoked.pk).status == Mailbox.Status.NEEDS_REAUTHORIZATION
    mail_settings.smtp.wait_for(lambda m: alice.email in m.rcpt_tos and revoked.email_address in m.subject)
    assert services.mailbox_check(kept).ok
    assert Mailbox.unscoped.get(pk=kept.pk).status == Mailbox.Status.ACTIVE


def test_it_refuses_the_wrong_account(oauth_signin: Any, mail_settings: Servers, alice_client: Client) -> None:
    email, other = unique_address("ms"), unique_address("ms-other")
    oauth_signin(alice_client, "microsoft", email, account=other)
    text = " ".join(messages_of(alice_client.get("/profile/")))
    assert f"signed in as {other}" in text and "Nothing was saved" in text
    assert not Mailbox.unscoped.filter(email_address__in=[email, other]).exists()


def test_it_refuses_a_bad_state(mail_settings: Servers, alice_client: Client) -> None:
    email = unique_address("ms")
    start = alice_client.post("/mailboxes/connect/", {
        "provider": "microsoft", "connect": "microsoft", "permission": "send", "post_processing": "nothing",
        "email_address": email})
    callback = local(follow(mail_settings.certs.ca, start["Location"]))
    page = alice_client.get(callback.replace("state=", "state=forged"), follow=True)
    assert "not valid" in " ".join(messages_of(page))
    assert not Mailbox.unscoped.filter(email_address=email).exists()
