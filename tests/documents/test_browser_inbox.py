"""The inbox in Chromium: a staff member files an unmatched document on a shipment in two clicks."""

from __future__ import annotations

from typing import Any

import pytest

from documents.models import Document
from mailboxes.models import Mailbox
from tests.documents.pdfs import make_pdf
from tests.documents.support import mail, receive, shipment
from tests.fixtures import PASSWORD
from tms.accounts.models import Staff

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_matches_from_the_inbox_in_two_clicks(
    browser: Any, live_server: Any, bob: Staff, inbox: Mailbox, django_capture_on_commit_callbacks: Any
) -> None:
    target = shipment(bob.tenant, 4242)
    shipment(bob.tenant, 4243)
    message = receive(inbox, mail("Signed paperwork", attachments=[
        ("signed.pdf", "application/pdf", make_pdf("DELIVERY RECEIPT\nReceived in good order"))]),
        django_capture_on_commit_callbacks)
    document = Document.objects.for_tenant(bob.tenant).get(source_message=message)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("E-mail").fill(bob.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        page.get_by_role("link", name="Documents").click()
        row = page.locator(f'tr[data-document="{document.public_id}"]')
        assert row.get_by_text("signed.pdf").is_visible()

        row.locator("select[name=shipment]").select_option(target.number)  # click 1
        row.get_by_role("button", name="Match").click()  # click 2
        page.wait_for_load_state()

        assert page.get_by_text(f"signed.pdf filed on {target.number}.").is_visible()
        assert page.locator(f'tr[data-document="{document.public_id}"]').count() == 0
        page.goto(f"{live_server.url}/shipments/{target.public_id}/")
        assert page.locator("#documents").get_by_role("link", name="signed.pdf").is_visible()
    finally:
        context.close()
    document.refresh_from_db()
    assert document.shipment == target and document.matched_by == bob
