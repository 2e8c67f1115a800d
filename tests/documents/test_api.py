"""The documents API: list, retrieve, download, match, ignore; scoped to the caller's tenant."""

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

PDF = make_pdf("BILL OF LADING\nNo. 5521907")


@pytest.fixture
def document(inbox: Mailbox, django_capture_on_commit_callbacks: Any) -> Document:
    message = receive(inbox, mail("BOL", attachments=[("bol.pdf", "application/pdf", PDF)]),
                      django_capture_on_commit_callbacks)
    return Document.objects.for_tenant(message.tenant).get(source_message=message)


def test_it_lists_and_retrieves_documents(bob_client: Client, charlie_client: Client, document: Document) -> None:
    listed = bob_client.get("/api/documents/?match_state=unmatched").json()
    assert [row["id"] for row in listed["results"]] == [str(document.public_id)]
    row = listed["results"][0]
    assert (row["filename"], row["kind"], row["status"], row["size"]) == ("bol.pdf", "bol", "processed", len(PDF))
    assert row["download_url"] == f"/api/documents/{document.public_id}/download/"
    assert "extracted_text" not in row
    detail = bob_client.get(f"/api/documents/{document.public_id}/").json()
    assert "No. 5521907" in detail["extracted_text"]
    assert bob_client.get("/api/documents/?match_state=matched").json()["results"] == []

    assert charlie_client.get("/api/documents/").json()["results"] == []
    assert charlie_client.get(f"/api/documents/{document.public_id}/").status_code == 404


def test_it_downloads_for_the_tenant_only(bob_client: Client, charlie_client: Client, document: Document) -> None:
    response = bob_client.get(f"/api/documents/{document.public_id}/download/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF  # type: ignore[attr-defined]
    assert response["Content-Disposition"].startswith("attachment;")
    assert charlie_client.get(f"/api/documents/{document.public_id}/download/").status_code == 404


def test_it_matches_by_number_or_id(
    bob_client: Client, charlie_client: Client, document: Document, acme: Tenant, globex: Tenant
) -> None:
    first, second = shipment(acme, 501), shipment(acme, 502)
    theirs = shipment(globex, 503)

    assert charlie_client.post(f"/api/documents/{document.public_id}/match/", {"shipment": theirs.number},
                               content_type="application/json").status_code == 404
    refused = bob_client.post(f"/api/documents/{document.public_id}/match/", {"shipment": str(theirs.public_id)},
                              content_type="application/json")
    assert refused.status_code == 400 and refused.json() == {"shipment": ["No such shipment."]}

    matched = bob_client.post(f"/api/documents/{document.public_id}/match/", {"shipment": first.number},
                              content_type="application/json")
    assert matched.status_code == 200
    assert (matched.json()["shipment_number"], matched.json()["match_state"]) == (first.number, "matched")
    moved = bob_client.post(f"/api/documents/{document.public_id}/match/", {"shipment": str(second.public_id)},
                            content_type="application/json")
    assert moved.json()["shipment"] == str(second.public_id)
    assert bob_client.get(f"/api/documents/?shipment={second.number}").json()["count"] == 1
    assert Activity.objects.for_tenant(acme).filter(kind="document").count() == 2


def test_it_ignores(bob_client: Client, charlie_client: Client, document: Document) -> None:
    assert charlie_client.post(f"/api/documents/{document.public_id}/ignore/").status_code == 404
    response = bob_client.post(f"/api/documents/{document.public_id}/ignore/")
    assert response.status_code == 200 and response.json()["match_state"] == "ignored"
