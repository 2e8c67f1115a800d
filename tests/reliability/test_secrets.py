"""The secrets plugin (secrets_plugin.py) finds a test bed password or token wherever it lands in clear
text: a database column (text and bytea), a log line, a response. Each finding is taken back afterwards,
so these tests prove the detector without failing the session."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from mailboxes.models import InboundMessage
from tests.reliability import secrets_plugin
from tests.reliability.support import make_box
from tms.accounts.models import Staff, Tenant

SECRET = "tb-secret-0123456789"


@pytest.fixture
def watched(testbed: Any) -> Iterator[secrets_plugin.Watch]:
    watch = secrets_plugin.WATCH
    before = len(watch.findings)
    testbed.users["leak-check@example.test"] = SECRET       # as dovecot.add_user() would record it
    try:
        yield watch
    finally:
        testbed.users.pop("leak-check@example.test", None)
        watch.secrets.discard(SECRET)
        del watch.findings[before:]


def test_it_finds_a_password_in_a_text_column_and_in_raw_bytes(
    watched: secrets_plugin.Watch, acme: Tenant, bob: Staff,
) -> None:
    before = len(watched.findings)
    acme.name = f"Acme {SECRET}"
    acme.save()
    box = make_box(bob, "leak@acme-mail.test")
    InboundMessage.objects.for_tenant(acme).create(mailbox=box, folder="INBOX", uidvalidity=1, uid=1, size=30,
                                                   message_id="<leak@t>", raw=b"password: " + SECRET.encode())
    secrets_plugin.scan_database("test")
    found = " ".join(watched.findings[before:])
    assert "accounts_tenant.name" in found and "mailboxes_inboundmessage.raw" in found
    assert SECRET not in found          # the report names the column, never the secret itself


def test_it_finds_a_password_in_a_log_line_that_redaction_does_not_catch(watched: secrets_plugin.Watch) -> None:
    before = len(watched.findings)
    logging.getLogger("mailboxes.test").warning("login with password=%s", SECRET)      # redacted: fine
    assert len(watched.findings) == before
    logging.getLogger("mailboxes.test").warning("mailbox says %s", SECRET)             # in clear: found
    assert len(watched.findings) == before + 1


LEAKED: dict[str, str] = {}


def leak_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(LEAKED["token"])


urlpatterns = [path("leak-check/", leak_view)]


def test_it_finds_a_token_in_a_response(
    watched: secrets_plugin.Watch, oauth_server: Any, settings: Any, db: None,
) -> None:
    LEAKED["token"] = oauth_server.token_for("leak@example.test").access_token
    assert LEAKED["token"] in watched.current()        # recorded when the test bed issued it
    settings.ROOT_URLCONF = __name__
    before = len(watched.findings)
    Client().get("/leak-check/")
    assert len(watched.findings) == before + 1
