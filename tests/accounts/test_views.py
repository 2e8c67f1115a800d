from __future__ import annotations

from django.test import Client

from tests.fixtures import PASSWORD
from tms.accounts.models import Staff


def test_it_logs_in_with_the_email_in_any_case_and_lands_on_the_staff_members_work(bob: Staff) -> None:
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/login/", {"username": "BOB@acme.test", "password": PASSWORD})
    assert response.status_code == 302
    landing = client.get(response["Location"], follow=True)
    assert landing.status_code == 200
    assert b"Bob Dispatch" in landing.content


def test_it_refuses_a_wrong_password(bob: Staff) -> None:
    response = Client().post("/login/", {"username": bob.email, "password": "wrong-password"})
    assert response.status_code == 200
    assert b"correct" in response.content.lower()  # "Please enter a correct e-mail and password"
    assert "_auth_user_id" not in Client().session


def test_it_does_not_redirect_off_site_after_login(bob: Staff) -> None:
    response = Client().post(
        "/login/?next=https://evil.example/", {"username": bob.email, "password": PASSWORD,
                                               "next": "https://evil.example/"}
    )
    assert response.status_code == 302
    assert not response["Location"].startswith("https://evil.example")


def test_it_logs_out_with_a_post(bob_client: Client) -> None:
    response = bob_client.post("/logout/")
    assert response.status_code == 302
    assert bob_client.get("/profile/").status_code == 302


def test_it_sends_anonymous_users_to_login() -> None:
    response = Client().get("/profile/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_lets_a_tenant_admin_add_and_edit_staff(alice_client: Client, acme) -> None:  # type: ignore[no-untyped-def]
    response = alice_client.post(
        "/staff/", {"name": "Dora New", "email": "dora@acme.test", "role": "staff", "password": "a-long-password-1"}
    )
    assert response.status_code == 302
    dora = Staff.objects.for_tenant(acme).get(email="dora@acme.test")
    assert dora.user.check_password("a-long-password-1")
    response = alice_client.post(f"/staff/{dora.public_id}/", {"name": "Dora Renamed", "role": "admin"})
    assert response.status_code == 302
    dora.refresh_from_db()
    dora.user.refresh_from_db()
    assert dora.name == "Dora Renamed" and dora.role == "admin" and not dora.user.is_active


def test_it_shows_a_clear_error_for_a_duplicate_email(alice_client: Client, bob: Staff) -> None:
    response = alice_client.post("/staff/", {"name": "Bob Again", "email": "Bob@Acme.test", "role": "staff"})
    assert response.status_code == 200
    assert b"already exists" in response.content


def test_it_keeps_plain_staff_out_of_staff_management(bob_client: Client) -> None:
    assert bob_client.get("/staff/").status_code == 403


def test_it_hides_other_tenants_staff_from_an_outsider(charlie_client: Client, bob: Staff) -> None:
    listing = charlie_client.get("/staff/")
    assert listing.status_code == 200 and b"bob@acme.test" not in listing.content
    assert charlie_client.get(f"/staff/{bob.public_id}/").status_code == 404
    response = charlie_client.post(f"/staff/{bob.public_id}/", {"name": "Pwned", "role": "admin", "active": "on"})
    assert response.status_code == 404
    bob.refresh_from_db()
    assert bob.name == "Bob Dispatch"


def test_it_scopes_the_staff_api_to_the_callers_tenant(charlie_client: Client, alice: Staff, bob: Staff,
                                                       charlie: Staff) -> None:
    body = charlie_client.get("/api/staff/").json()
    assert [row["email"] for row in body["results"]] == [charlie.email]
    assert charlie_client.get(f"/api/staff/{bob.public_id}/").status_code == 404
    assert Client().get("/api/staff/").status_code == 403


def test_it_logs_out_staff_of_a_deactivated_tenant(bob_client: Client, acme) -> None:  # type: ignore[no-untyped-def]
    acme.active = False
    acme.save()
    assert bob_client.get("/profile/").status_code == 302


def test_it_lets_a_tenant_admin_set_the_request_rules(alice_client: Client, bob_client: Client, acme) -> None:  # type: ignore[no-untyped-def]
    assert bob_client.get("/company/rules/").status_code == 403
    response = alice_client.post(
        "/company/rules/", {"lane_precision": "postal", "required_fields": ["pickup_date", "equipment"]}
    )
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.lane_precision == "postal" and acme.required_fields == ["equipment", "pickup_date"]
    bad = alice_client.post("/company/rules/", {"lane_precision": "anything", "required_fields": ["password"]})
    assert bad.status_code == 200 and b"Select a valid choice" in bad.content
