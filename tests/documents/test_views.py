"""The documents inbox, matching in two clicks, downloads, and the shipment page's documents."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from documents.models import Document
from mailboxes.models import Mailbox
from shipments.models import Activity
from tests.documents.pdfs import make_pdf
from tests.documents.support import mail, receive, shipment
from tms.accounts.models import Tenant

pytestmark = pytest.mark.django_db

PDF = make_pdf("PROOF OF DELIVERY\nDelivered 10:42, signed J. Doe")


@pytest.fixture
def unmatched(inbox: Mailbox, django_capture_on_commit_callbacks: Any) -> Document:
    message = receive(inbox, mail("Signed POD", attachments=[("pod.pdf", "application/pdf", PDF)]),
                      django_capture_on_commit_callbacks)
    return Document.objects.for_tenant(message.tenant).get(source_message=message)


def test_it_lists_unmatched_documents_with_a_match_form(bob_client: Client, unmatched: Document, acme: Tenant) -> None:
    target = shipment(acme, 123)
    response = bob_client.get("/documents/inbox/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "pod.pdf" in page and "Signed POD" in page and 'name="csrfmiddlewaretoken"' in page
    assert f'<option value="{target.number}">' in page
    assert f"/documents/{unmatched.public_id}/match/" in page


def test_it_matches_a_document_in_two_clicks(bob_client: Client, unmatched: Document, acme: Tenant) -> None:
    target = shipment(acme, 123)
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user(bob_client))
    page = client.get("/documents/inbox/")
    token = page.cookies["csrftoken"].value

    response = client.post(f"/documents/{unmatched.public_id}/match/",
                           {"shipment": target.number, "csrfmiddlewaretoken": token})

    assert response.status_code == 302 and response["Location"] == "/documents/inbox/"
    unmatched.refresh_from_db()
    assert unmatched.shipment == target and unmatched.match_state == "matched"
    assert unmatched.matched_by is not None and unmatched.matched_by.email == "bob@acme.test"
    assert Activity.objects.for_tenant(acme).filter(shipment=target, kind="document", actor__isnull=False).count() == 1
    assert f'data-document="{unmatched.public_id}"' not in client.get("/documents/inbox/").content.decode()
    detail = client.get(f"/shipments/{target.public_id}/").content.decode()
    assert "pod.pdf" in detail and f"/documents/{unmatched.public_id}/download/" in detail


def _user(client: Client) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_it_refuses_a_match_without_csrf(unmatched: Document, acme: Tenant, bob_client: Client) -> None:
    target = shipment(acme, 123)
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user(bob_client))
    response = client.post(f"/documents/{unmatched.public_id}/match/", {"shipment": target.number})
    assert response.status_code == 403
    unmatched.refresh_from_db()
    assert unmatched.shipment is None


def test_it_downloads_for_the_tenants_staff_only(
    bob_client: Client, charlie_client: Client, unmatched: Document
) -> None:
    response = bob_client.get(f"/documents/{unmatched.public_id}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PDF  # type: ignore[attr-defined]
    assert response["Content-Disposition"].startswith("attachment;") and "pod.pdf" in response["Content-Disposition"]
    assert response["Content-Type"] == "application/octet-stream"

    assert charlie_client.get(f"/documents/{unmatched.public_id}/download/").status_code == 404
    assert Client().get(f"/documents/{unmatched.public_id}/download/").status_code == 302  # to the login page


def test_an_outsider_can_neither_see_nor_match_another_tenants_document(
    charlie_client: Client, unmatched: Document, acme: Tenant, globex: Tenant
) -> None:
    ours = shipment(acme, 123)
    theirs = shipment(globex, 123)
    assert "pod.pdf" not in charlie_client.get("/documents/inbox/").content.decode()
    for number in (ours.number, theirs.number):
        response = charlie_client.post(f"/documents/{unmatched.public_id}/match/", {"shipment": number})
        assert response.status_code == 404
    assert charlie_client.post(f"/documents/{unmatched.public_id}/ignore/").status_code == 404
    unmatched.refresh_from_db()
    assert unmatched.shipment is None and unmatched.match_state == "unmatched"


def test_it_does_not_match_to_another_tenants_shipment(
    bob_client: Client, unmatched: Document, globex: Tenant
) -> None:
    theirs = shipment(globex, 777)
    response = bob_client.post(f"/documents/{unmatched.public_id}/match/", {"shipment": str(theirs.public_id)},
                               follow=True)
    assert "no such shipment" in response.content.decode()
    unmatched.refresh_from_db()
    assert unmatched.shipment is None


def test_it_ignores_a_document(bob_client: Client, unmatched: Document) -> None:
    response = bob_client.post(f"/documents/{unmatched.public_id}/ignore/")
    assert response.status_code == 302
    unmatched.refresh_from_db()
    assert unmatched.match_state == "ignored"
    assert f'data-document="{unmatched.public_id}"' not in bob_client.get("/documents/inbox/").content.decode()


def test_it_never_redirects_off_site(bob_client: Client, unmatched: Document) -> None:
    response = bob_client.post(f"/documents/{unmatched.public_id}/ignore/", {"next": "https://evil.example/"})
    assert response["Location"] == "/documents/inbox/"
