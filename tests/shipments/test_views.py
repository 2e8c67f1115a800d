"""The pages staff work in: shipments list and detail, notes, edits, customers. Every page is
tenant-scoped (charlie, of another company, gets 404s and empty lists) and renders in a constant
number of queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mailboxes.models import OutboundMessage
from shipments import services
from shipments.models import Activity, Shipment
from tests.factories import make_mailbox
from tests.shipments.support import build_mail, make_shipment, store_inbound, verdict_for
from tms.accounts.models import Staff, Tenant

DALLAS = {"origin": {"city": "Dallas", "state": "TX", "postal_code": "75201", "country": "US"},
          "destination": {"city": "Atlanta", "state": "GA", "country": "US"}}


def many_shipments(tenant: Tenant, staff: Staff, n: int) -> list[Shipment]:
    customer = services.customer_create(tenant=tenant, name=f"Customer {n}")
    mailbox = make_mailbox(staff, f"box{n}@acme.test")
    out = []
    for i in range(n):
        raw = build_mail(sender=f"c{i}@cust{n}.example", to=mailbox.email_address, subject=f"quote {i}", body="x")
        message = store_inbound(mailbox, raw)
        shipment = services.message_intake(
            message=message, classification=verdict_for(message, "quote", fields=DALLAS)).created[0]
        services.shipment_update(shipment=shipment, actor=staff, changes={"customer": customer, "status": "booked"})
        services.activity_note_add(shipment=shipment, actor=staff, text=f"note {i}")
        out.append(shipment)
    return out


# ----------------------------------------------------------------------------- list


def test_it_lands_staff_on_the_shipment_list_after_login(bob_client: Client) -> None:
    response = bob_client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"] == reverse("shipment-list")


def test_it_lists_the_tenants_shipments_newest_first_with_number_status_and_places(
    bob_client: Client, acme: Tenant, bob: Staff
) -> None:
    make_shipment(acme, fields=DALLAS)
    make_shipment(acme, fields={"origin": {"city": "Spokane", "state": "WA"}, "destination": {"city": "Boise"}})
    html = bob_client.get("/shipments/").content.decode()
    assert html.index("SHP-000002") < html.index("SHP-000001")
    assert "Dallas, TX 75201" in html and "Atlanta, GA" in html and "Spokane, WA" in html
    assert "Quote requested" in html


def test_it_filters_by_assignee_status_customer_and_search(bob_client: Client, acme: Tenant, alice: Staff,
                                                           bob: Staff) -> None:
    customer = services.customer_create(tenant=acme, name="Sawmill")
    mine = make_shipment(acme, assigned_to=bob, fields=DALLAS)
    theirs = make_shipment(acme, assigned_to=alice, customer=customer, status="booked",
                           fields={"origin": {"city": "Spokane"}})

    def numbers(query: str) -> set[str]:
        response = bob_client.get("/shipments/?" + query)
        assert response.status_code == 200
        return {s.number for s in response.context["shipments"]}

    assert numbers("mine=on") == {mine.number}
    assert numbers("status=booked") == {theirs.number}
    assert numbers(f"customer={customer.public_id}") == {theirs.number}
    assert numbers("q=spokane") == {theirs.number}
    assert numbers("q=000001") == {mine.number}
    assert numbers("status=bogus") == set()


def test_it_paginates(bob_client: Client, acme: Tenant) -> None:
    for _ in range(55):
        make_shipment(acme)
    first = bob_client.get("/shipments/")
    second = bob_client.get("/shipments/?page=2")
    assert len(first.context["shipments"]) == 50 and len(second.context["shipments"]) == 5


def test_it_shows_an_outsider_none_of_it(charlie_client: Client, acme: Tenant, bob: Staff) -> None:
    [shipment] = many_shipments(acme, bob, 1)
    customer = shipment.customer
    assert customer is not None
    assert "SHP-000001" not in charlie_client.get("/shipments/").content.decode()
    assert charlie_client.get(f"/shipments/{shipment.public_id}/").status_code == 404
    assert charlie_client.post(f"/shipments/{shipment.public_id}/notes/", {"text": "hi"}).status_code == 404
    assert charlie_client.post(f"/shipments/{shipment.public_id}/edit/", {"status": "cancelled"}).status_code == 404
    assert charlie_client.post(f"/shipments/{shipment.public_id}/reply/", {"to": "x@y.example", "body": "b"}
                               ).status_code == 404
    assert charlie_client.get(f"/customers/{customer.public_id}/").status_code == 404
    assert customer.name not in charlie_client.get("/customers/").content.decode()
    assert charlie_client.get(f"/shipments/?customer={customer.public_id}").context["page"].paginator.count == 0
    shipment.refresh_from_db()
    assert shipment.status == "booked" and not shipment.activities.filter(text="hi").exists()


def test_it_sends_anonymous_users_to_login(client: Client, acme: Tenant) -> None:
    shipment = make_shipment(acme)
    for url in ("/shipments/", f"/shipments/{shipment.public_id}/", "/customers/"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]


# ----------------------------------------------------------------------------- detail


def test_it_shows_the_timeline_of_mail_notes_and_changes(bob_client: Client, acme: Tenant, bob: Staff) -> None:
    [shipment] = many_shipments(acme, bob, 1)
    OutboundMessage.objects.for_tenant(acme).create(staff=bob, from_address="bob@acme.test", message_id="<o@x>",
                                                    recipients=["c0@cust1.example"], subject="[SHP-000001] Rates")
    services.activity_record_outbound(
        shipment=shipment, message=OutboundMessage.objects.for_tenant(acme).get(), actor=bob, text="Here you go")
    html = bob_client.get(f"/shipments/{shipment.public_id}/").content.decode()
    for expected in ("SHP-000001", "quote 0", "c0@cust1.example", "note 0", "Status: Quote requested → Booked",
                     "[SHP-000001] Rates", "Here you go", 'id="documents"', "Add note", "Send"):
        assert expected in html, expected


def test_it_adds_a_note(bob_client: Client, acme: Tenant, bob: Staff) -> None:
    shipment = make_shipment(acme)
    response = bob_client.post(f"/shipments/{shipment.public_id}/notes/", {"text": "Called the shipper"})
    assert response.status_code == 302
    note = shipment.activities.get(text="Called the shipper")
    assert (note.kind, note.actor) == (Activity.Kind.NOTE, bob)
    assert bob_client.post(f"/shipments/{shipment.public_id}/notes/", {"text": ""}).status_code == 400


def test_it_edits_the_fields_and_logs_the_status_change(bob_client: Client, acme: Tenant, bob: Staff) -> None:
    shipment = make_shipment(acme, fields=DALLAS)
    data = {"status": "in_transit", "assigned_to": bob.pk, "origin_city": "Fort Worth", "origin_state": "tx",
            "destination_city": "Atlanta", "weight_lbs": "42000", "pieces": "", "equipment": "reefer",
            "pro_number": "PRO-9", "pickup_date": "2026-12-01"}
    response = bob_client.post(f"/shipments/{shipment.public_id}/edit/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    shipment.refresh_from_db()
    assert (shipment.status, shipment.origin_city, shipment.origin_state, shipment.weight_lbs,
            shipment.equipment, shipment.pro_number, shipment.assigned_to) == (
        "in_transit", "Fort Worth", "TX", 42000, "reefer", "PRO-9", bob)
    assert shipment.activities.filter(kind=Activity.Kind.STATUS_CHANGE, actor=bob).count() == 1
    bad = bob_client.post(f"/shipments/{shipment.public_id}/edit/", {**data, "weight_lbs": "-5"})
    assert bad.status_code == 400


def test_it_creates_a_shipment_by_hand(bob_client: Client, acme: Tenant, bob: Staff) -> None:
    response = bob_client.post("/shipments/new/", {"status": "booked", "assigned_to": bob.pk,
                                                   "origin_city": "Reno", "destination_city": "Fresno"})
    assert response.status_code == 302
    shipment = Shipment.objects.for_tenant(acme).get()
    assert (shipment.number, shipment.origin_city, shipment.status) == ("SHP-000001", "Reno", "booked")


# ----------------------------------------------------------------------------- customers


def test_it_shows_a_customer_with_its_shipments_and_mail(bob_client: Client, acme: Tenant, bob: Staff) -> None:
    [shipment] = many_shipments(acme, bob, 1)
    customer = shipment.customer
    assert customer is not None
    services.customer_update(customer=customer, email_domains=["cust1.example"])
    mailbox = make_mailbox(bob, "other@acme.test")
    message = store_inbound(mailbox, build_mail(sender="c0@cust1.example", to="other@acme.test",
                                                subject="Hello again", body="hi"))
    services.message_intake(message=message, classification=verdict_for(message, "other"))
    html = bob_client.get(f"/customers/{customer.public_id}/").content.decode()
    assert "SHP-000001" in html and "Hello again" in html and "c0@cust1.example" in html


def test_it_adds_and_edits_customers(bob_client: Client, acme: Tenant) -> None:
    response = bob_client.post("/customers/", {"name": "Inland Sawmill", "email_domains": "sawmill.example, @mill.example"})
    assert response.status_code == 302
    customer = services.Customer.objects.for_tenant(acme).get()
    assert customer.email_domains == ["mill.example", "sawmill.example"]
    refused = bob_client.post("/customers/", {"name": "Free", "email_domains": "gmail.com"})
    assert refused.status_code == 200 and "free-mail" in refused.content.decode()
    edited = bob_client.post(f"/customers/{customer.public_id}/", {"name": "Inland Sawmill Co", "email_domains": ""})
    assert edited.status_code == 302
    customer.refresh_from_db()
    assert customer.name == "Inland Sawmill Co" and customer.email_domains == []


# ----------------------------------------------------------------------------- query counts


@pytest.mark.parametrize("page", ["list", "detail", "customer", "customers"])
def test_it_renders_each_page_in_a_constant_number_of_queries(
    page: str, bob_client: Client, acme: Tenant, bob: Staff, django_assert_max_num_queries: Any,
    django_assert_num_queries: Any,
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def url(shipments: list[Shipment]) -> str:
        customer = shipments[0].customer
        assert customer is not None
        return {"list": "/shipments/", "detail": f"/shipments/{shipments[0].public_id}/",
                "customer": f"/customers/{customer.public_id}/", "customers": "/customers/"}[page]

    one = url(many_shipments(acme, bob, 1))
    with CaptureQueriesContext(connection) as few:
        assert bob_client.get(one).status_code == 200
    many = many_shipments(acme, bob, 12)
    # twelve rows on the same shipment's timeline too
    for i in range(12):
        services.activity_note_add(shipment=many[0], actor=bob, text=f"more {i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert bob_client.get(url(many)).status_code == 200


def test_it_says_why_a_reply_cannot_go_and_keeps_nothing(bob_client: Client, acme: Tenant, settings: Any) -> None:
    settings.RELAY_SMTP_URL = ""  # bob has no mailbox, the company none, and there is no relay
    shipment = make_shipment(acme)
    response = bob_client.post(f"/shipments/{shipment.public_id}/reply/", {"to": "gus@sawmill.example",
                                                                          "subject": "Hi", "body": "Hello"})
    assert response.status_code == 400 and "Not sent" in response.content.decode()
    assert not OutboundMessage.objects.for_tenant(acme).exists()
    assert not shipment.activities.filter(kind=Activity.Kind.EMAIL_OUT).exists()
    bad = bob_client.post(f"/shipments/{shipment.public_id}/reply/", {"to": "not an address", "body": "x"})
    assert bad.status_code == 400
