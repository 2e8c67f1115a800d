"""REST API for shipments, activities, customers and contacts: tenant-scoped (charlie gets 404s
and empty lists), writes through the services, and an OpenAPI schema without warnings."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from shipments import services
from shipments.models import Activity, Shipment
from tests.shipments.support import make_shipment
from tms.accounts.models import Staff, Tenant

DALLAS = {"origin": {"city": "Dallas", "state": "TX", "postal_code": "75201", "country": "US"},
          "destination": {"city": "Atlanta", "state": "GA", "country": "US"}}


@pytest.fixture
def shipment(acme: Tenant, bob: Staff) -> Shipment:
    customer = services.customer_create(tenant=acme, name="Inland Sawmill", email_domains=["sawmill.example"])
    return make_shipment(acme, assigned_to=bob, customer=customer, fields=DALLAS)


def test_it_lists_and_shows_shipments_with_structured_places(bob_client: Client, shipment: Shipment) -> None:
    listing = bob_client.get("/api/shipments/").json()
    assert [s["number"] for s in listing["results"]] == ["SHP-000001"]
    detail = bob_client.get(f"/api/shipments/{shipment.public_id}/").json()
    assert detail["origin"] == {"city": "Dallas", "state": "TX", "postal_code": "75201", "country": "US"}
    assert detail["destination"]["city"] == "Atlanta"
    assert detail["customer_name"] == "Inland Sawmill" and detail["status"] == "quote_requested"


def test_it_filters_shipments(bob_client: Client, acme: Tenant, shipment: Shipment, alice: Staff) -> None:
    make_shipment(acme, assigned_to=alice, status="booked", fields={"origin": {"city": "Reno"}})

    def numbers(query: str) -> list[str]:
        return [s["number"] for s in bob_client.get("/api/shipments/?" + query).json()["results"]]

    assert numbers("mine=true") == ["SHP-000001"]
    assert numbers("status=booked") == ["SHP-000002"]
    assert numbers("q=reno") == ["SHP-000002"]
    assert numbers(f"customer={shipment.customer.public_id}") == ["SHP-000001"]  # type: ignore[union-attr]
    assert numbers("customer=not-a-uuid") == []


def test_it_creates_and_updates_a_shipment(bob_client: Client, acme: Tenant, bob: Staff) -> None:
    created = bob_client.post("/api/shipments/", {
        "status": "booked", "origin": {"city": "Reno", "state": "nv"}, "destination": {"city": "Fresno"},
        "weight_lbs": 1000, "assigned_to": str(bob.public_id),
    }, content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["number"] == "SHP-000001" and body["origin"]["state"] == "NV" and body["assigned_to"] == str(bob.public_id)
    patched = bob_client.patch(f"/api/shipments/{body['id']}/", {"status": "in_transit", "pro_number": "PRO-7"},
                               content_type="application/json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["status"] == "in_transit" and patched.json()["pro_number"] == "PRO-7"
    shipment = Shipment.objects.for_tenant(acme).get()
    assert shipment.activities.filter(kind=Activity.Kind.STATUS_CHANGE, actor=bob).exists()
    bad = bob_client.patch(f"/api/shipments/{body['id']}/", {"status": "lost"}, content_type="application/json")
    assert bad.status_code == 400


def test_it_adds_notes_and_lists_activities(bob_client: Client, shipment: Shipment, bob: Staff) -> None:
    response = bob_client.post("/api/activities/", {"shipment": str(shipment.public_id), "text": "Called them"},
                               content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == "note" and response.json()["actor"] == str(bob.public_id)
    listed = bob_client.get(f"/api/activities/?shipment={shipment.public_id}").json()["results"]
    assert listed[0]["text"] == "Called them"


def test_it_manages_customers_and_contacts(bob_client: Client, acme: Tenant) -> None:
    customer = bob_client.post("/api/customers/", {"name": "Globe Mills", "email_domains": ["globe.example"]},
                               content_type="application/json")
    assert customer.status_code == 201, customer.content
    assert customer.json()["email_domains"] == ["globe.example"]
    refused = bob_client.post("/api/customers/", {"name": "Free", "email_domains": ["gmail.com"]},
                              content_type="application/json")
    assert refused.status_code == 400
    contact = bob_client.post("/api/contacts/", {"email": "ann@globe.example", "name": "Ann"},
                              content_type="application/json")
    assert contact.status_code == 201, contact.content
    assert contact.json()["customer"] == customer.json()["id"]  # found by the domain
    dup = bob_client.post("/api/contacts/", {"email": "ANN@globe.example"}, content_type="application/json")
    assert dup.status_code == 400
    moved = bob_client.patch(f"/api/contacts/{contact.json()['id']}/", {"customer": None},
                             content_type="application/json")
    assert moved.status_code == 200 and moved.json()["customer"] is None


def test_it_shows_an_outsider_nothing(charlie_client: Client, shipment: Shipment, charlie: Staff) -> None:
    customer = shipment.customer
    assert customer is not None
    contact = services.contact_create(tenant=shipment.tenant, email="ann@sawmill.example")
    for path in ("shipments", "activities", "customers", "contacts"):
        assert charlie_client.get(f"/api/{path}/").json()["results"] == [], path
    assert charlie_client.get(f"/api/shipments/{shipment.public_id}/").status_code == 404
    assert charlie_client.get(f"/api/customers/{customer.public_id}/").status_code == 404
    assert charlie_client.get(f"/api/contacts/{contact.public_id}/").status_code == 404
    assert charlie_client.patch(f"/api/shipments/{shipment.public_id}/", {"status": "cancelled"},
                                content_type="application/json").status_code == 404
    # nor can charlie point his own rows at acme's
    note = charlie_client.post("/api/activities/", {"shipment": str(shipment.public_id), "text": "x"},
                               content_type="application/json")
    assert note.status_code == 400
    own = charlie_client.post("/api/shipments/", {"customer": str(customer.public_id)}, content_type="application/json")
    assert own.status_code == 400
    shipment.refresh_from_db()
    assert shipment.status == "quote_requested"


def test_it_refuses_anonymous_callers(client: Client, shipment: Shipment) -> None:
    assert client.get("/api/shipments/").status_code in (401, 403)


def test_it_describes_the_api_in_an_openapi_schema_without_warnings(alice_client: Client, capsys: Any) -> None:
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ours = [w for w in GENERATOR_STATS._warn_cache if "shipments" in w]
    assert ours == []
    for path in ("/api/shipments/", "/api/shipments/{id}/", "/api/activities/", "/api/customers/", "/api/contacts/"):
        assert path in schema["paths"], path
    assert alice_client.get("/api/schema/").status_code == 200
