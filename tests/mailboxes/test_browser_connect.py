"""Chromium: a staff member adds an IMAP/SMTP mailbox through the dialog and activates it by the link."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mailboxes.models import Mailbox
from tests.fixtures import PASSWORD
from tests.mailboxes.conftest import Servers, unique_address
from tms.accounts.models import Staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_adds_an_imap_mailbox_from_the_dialog_and_activates_it_by_the_emailed_link(
    browser: Any, live_server: Any, mail_settings: Servers, settings: Any, bob: Staff
) -> None:
    settings.SITE_URL = live_server.url
    email = unique_address("browser")
    mail_settings.dovecot.add_user(email, "browser-pass-1")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("E-mail").fill(bob.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        page.goto(f"{live_server.url}/profile/")

        page.get_by_role("button", name="Add Mailbox Config").click()
        dialog = page.locator("dialog#mailbox-dialog")
        assert dialog.get_by_role("heading", name="Edit Mailbox Connection").is_visible()
        assert dialog.locator("input[value=front]").is_disabled()
        dialog.get_by_label("Google").check()
        assert dialog.get_by_role("button", name="Sign in with Google").is_visible()
        assert not dialog.get_by_role("button", name="Request Authorization Token").is_visible()
        dialog.get_by_label("IMAP/SMTP").check()
        dialog.get_by_label("Send and Read All Emails").check()
        dialog.get_by_label("Archive").check()
        dialog.locator("#id_email_address").fill(email)
        dialog.locator("#id_imap_host").fill("127.0.0.1")
        dialog.locator("#id_imap_port").fill(str(mail_settings.dovecot.imaps_port))
        dialog.locator("#id_imap_security").select_option("ssl")
        dialog.locator("#id_smtp_host").fill("127.0.0.1")
        dialog.locator("#id_smtp_port").fill(str(mail_settings.dovecot.submission_port))
        dialog.locator("#id_smtp_security").select_option("starttls")
        dialog.locator("#id_password").fill("browser-pass-1")
        dialog.get_by_role("button", name="Request Authorization Token").click()
        page.wait_for_load_state()
        assert page.get_by_text("We sent an authorization link").is_visible()
        row = page.locator("tr", has_text=email)
        assert row.locator(".mailbox-status").inner_text() == "Pending authorization"

        mail = mail_settings.smtp.wait_for(lambda m: email in m.rcpt_tos)
        body = mail.message().get_body(preferencelist=("plain",))
        assert body is not None
        found = re.search(re.escape(live_server.url) + r"/mailboxes/authorize/\S+/", body.get_content())
        assert found
        page.goto(found.group(0))
        page.wait_for_load_state()
        assert page.url.endswith("/profile/")
        assert page.locator("tr", has_text=email).locator(".mailbox-status").inner_text() == "Active"
    finally:
        context.close()
    mailbox = Mailbox.unscoped.get(email_address=email)
    assert (mailbox.status, mailbox.permission, mailbox.post_processing) == ("active", "send_and_read", "archive")
