"""Check: log in to IMAP (when reading) and SMTP against Dovecot, and name the stage that failed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from mailboxes import services
from mailboxes.models import Mailbox, MailboxEvent
from tests.factories import make_mailbox
from tests.mailboxes.conftest import Servers, messages_of, unique_address
from tests.testbed._proc import free_port
from tests.testbed.certs import SYSTEM_BUNDLE
from tms import net
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox(mail_settings: Servers, alice: Staff) -> Mailbox:
    email = unique_address("check")
    mail_settings.dovecot.add_user(email, "right-pass")
    return make_mailbox(alice, email, secret="right-pass", imap_port=mail_settings.dovecot.imaps_port,
                        smtp_port=mail_settings.dovecot.submission_port)


def test_it_passes_with_the_right_password_and_records_it(mailbox: Mailbox) -> None:
    result = services.mailbox_check(mailbox)
    assert result.ok and (result.imap, result.smtp, result.stage) == ("ok", "ok", None)
    assert MailboxEvent.unscoped.filter(mailbox=mailbox, kind="check_ok").count() == 1


def test_it_names_authentication_for_a_bad_password(mailbox: Mailbox) -> None:
    mailbox.secret = "wrong-pass"
    mailbox.save()
    result = services.mailbox_check(mailbox)
    assert not result.ok and result.stage == "authentication" and result.imap == "failed"
    mailbox.refresh_from_db()
    assert mailbox.last_error.startswith("authentication") and mailbox.last_error_at
    assert MailboxEvent.unscoped.filter(mailbox=mailbox, kind="check_failed").count() == 1


def test_it_names_authentication_for_a_bad_smtp_password_of_a_send_only_mailbox(mailbox: Mailbox) -> None:
    Mailbox.unscoped.filter(pk=mailbox.pk).update(permission="send", secret="")
    mailbox.refresh_from_db()
    mailbox.secret = "wrong-pass"
    result = services.mailbox_check(mailbox)
    assert (result.ok, result.imap, result.smtp, result.stage) == (False, "skipped", "failed", "authentication")


def test_it_names_connect_for_a_closed_port(mailbox: Mailbox) -> None:
    mailbox.imap_port = free_port()
    mailbox.save()
    result = services.mailbox_check(mailbox)
    assert not result.ok and result.stage == "connect"


def test_it_names_tls_for_an_untrusted_certificate(
    mailbox: Mailbox, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MAILBOX_CA_FILE = ""  # only the system CAs, which do not know the test CA
    monkeypatch.setenv("SSL_CERT_FILE", str(SYSTEM_BUNDLE))
    net._ssl_context.cache_clear()
    try:
        result = services.mailbox_check(mailbox)
    finally:
        net._ssl_context.cache_clear()
    assert not result.ok and result.stage == "tls"
    assert "certificate" in result.message


def test_it_names_tls_when_starttls_is_not_offered(mailbox: Mailbox, mail_settings: Servers) -> None:
    mailbox.smtp_port = mail_settings.smtp.sink_port  # a server without STARTTLS: never skipped silently
    mailbox.save()
    result = services.mailbox_check(mailbox)
    assert not result.ok and result.stage == "tls" and result.smtp == "failed"


def test_it_names_dns_for_a_host_that_does_not_resolve(mailbox: Mailbox) -> None:
    mailbox.imap_host = "no-such-host.invalid"
    mailbox.save()
    assert services.mailbox_check(mailbox).stage == "dns"


def test_it_checks_from_the_profile_button(mailbox: Mailbox, alice_client: Client) -> None:
    page = alice_client.post(f"/mailboxes/{mailbox.public_id}/check/", follow=True)
    assert "IMAP and SMTP logged in" in " ".join(messages_of(page))
