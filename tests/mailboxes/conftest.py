"""Wiring for the mailbox-connection tests: settings pointed at the real test-bed servers, and a
helper that plays the browser through an OAuth sign-in."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from django.test import Client

from tests.testbed.smtp import Received


@dataclass
class Servers:
    certs: Any
    oauth: Any
    dovecot: Any
    smtp: Any


@pytest.fixture
def mail_settings(settings: Any, certs: Any, oauth_server: Any, dovecot: Any, smtp_server: Any) -> Iterator[Servers]:
    """Point the app at the test bed: loopback hosts allowed, the test CA trusted, OAuth endpoints at the
    mock (which stands in for Google and Microsoft), provider IMAP/SMTP at Dovecot, system mail to the sink."""
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True
    settings.MAILBOX_CA_FILE = str(certs.ca)
    settings.SITE_URL = "http://testserver"
    # System mail ("Email Assistant") goes through the app's EMAIL_BACKEND to the system relay, here
    # the aiosmtpd sink, which captures it.
    settings.EMAIL_BACKEND = "mailboxes.mail_backend.EmailBackend"
    settings.RELAY_SMTP_URL = f"smtp://127.0.0.1:{smtp_server.sink_port}"

    settings.GOOGLE_CLIENT_ID = "google-client-id"
    settings.GOOGLE_CLIENT_SECRET = "google-secret"
    settings.GOOGLE_AUTH_URI = oauth_server.authorize_url
    settings.GOOGLE_TOKEN_URI = oauth_server.token_url
    settings.GOOGLE_IMAP_HOST = "127.0.0.1"
    settings.GOOGLE_IMAP_PORT = dovecot.imaps_port
    settings.GOOGLE_SMTP_HOST = "127.0.0.1"
    settings.GOOGLE_SMTP_PORT = dovecot.submissions_port
    settings.GOOGLE_SMTP_SECURITY = "ssl"

    settings.MICROSOFT_CLIENT_ID = "ms-client-id"
    settings.MICROSOFT_CLIENT_SECRET = "ms-secret"
    settings.MICROSOFT_AUTHORITY = oauth_server.ms_authority
    settings.MICROSOFT_IMAP_HOST = "127.0.0.1"
    settings.MICROSOFT_IMAP_PORT = dovecot.imaps_port
    settings.MICROSOFT_SMTP_HOST = "127.0.0.1"
    settings.MICROSOFT_SMTP_PORT = dovecot.submission_port
    settings.MICROSOFT_SMTP_SECURITY = "starttls"

    oauth_server.reset()
    smtp_server.clear()
    try:
        yield Servers(certs=certs, oauth=oauth_server, dovecot=dovecot, smtp=smtp_server)
    finally:
        oauth_server.reset()


def unique_address(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.test"


def follow(ca: Any, url: str) -> str:
    """What the browser does at the OAuth server: GET the authorization URL, return the callback URL."""
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(url, allow_redirects=False, verify=str(ca), timeout=10)
    assert r.status_code == 302, r.text[:300]
    return str(r.headers["Location"])


def local(url: str) -> str:
    """The path and query of an absolute URL of ours, for the Django test client."""
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


def with_login_hint(url: str, email: str) -> str:
    """The authorization URL as if the user picked another account at the provider."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["login_hint"] = email
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def oauth_signin(mail_settings: Servers) -> Callable[..., Any]:
    """Start "Sign in with <provider>" as the client's user and come back through the callback.

    account: sign in at the provider as this account (default: the address being connected).
    Returns the callback's response."""

    def signin(client: Client, provider: str, email: str, *, account: str | None = None,
               permission: str = "send_and_read", post_processing: str = "archive") -> Any:
        response = client.post("/mailboxes/connect/", {
            "provider": provider, "connect": provider, "permission": permission,
            "post_processing": post_processing, "email_address": email})
        assert response.status_code == 302, response.content[:2000]
        auth_url = response["Location"]
        assert auth_url.startswith(mail_settings.oauth.issuer)
        if account is not None:
            auth_url = with_login_hint(auth_url, account)
        callback = follow(mail_settings.certs.ca, auth_url)
        return client.get(local(callback))

    return signin


LINK = re.compile(r"http://testserver(/mailboxes/authorize/[^\s/]+/)")


def link_in(message: Received) -> str:
    body = message.message().get_body(preferencelist=("plain",))
    assert body is not None
    found = LINK.search(body.get_content())
    assert found, body.get_content()
    return found.group(1)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# The sending tests' settings fixture (tests/mailboxes/sending_support.py).
from tests.mailboxes.sending_support import send_settings  # noqa: E402, F401


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """The staff fixtures set passwords; PBKDF2 at full strength costs most of a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
