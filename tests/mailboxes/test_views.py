"""The profile's mailbox list and buttons; nobody but the owner reaches a mailbox (404)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from mailboxes.models import Mailbox, MailboxEvent
from tests.factories import make_mailbox
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db

ACTIONS = ["check", "send-test", "default", "disable", "enable", "reconnect", "remove"]


@pytest.fixture
def mailbox(alice: Staff) -> Mailbox:
    return make_mailbox(alice, "alice-box@example.test", is_default=True)


def test_it_shows_the_add_button_the_dialog_and_the_staff_members_mailboxes(
    alice: Staff, alice_client: Client, mailbox: Mailbox
) -> None:
    make_mailbox(alice, "pending@example.test", status="pending_authorization")
    make_mailbox(alice, "stale@example.test", provider="google", status="needs_reauthorization",
                 last_error="token refresh refused: invalid_grant")
    page = alice_client.get("/profile/").content.decode()
    assert "Add Mailbox Config" in page and "Edit Mailbox Connection" in page
    for label in ("Google", "Microsoft", "IMAP/SMTP", "Front", "coming soon", "Send Emails Only",
                  "Send and Read All Emails", "Archive", "Mark As Read", "Delete", "Do Nothing",
                  "Sign in with Google", "Sign in with Microsoft", "Request Authorization Token"):
        assert label in page, label
    assert 'value="front" disabled' in page
    for status in ("Active", "Pending authorization", "Needs re-authorization"):
        assert status in page
    assert "stale@example.test needs to be reconnected" in page  # the banner
    for button in ("Check", "Send test e-mail", "Edit", "Make default", "Disable", "Reconnect", "Remove"):
        assert f">{button}<" in page, button
    assert page.count('name="csrfmiddlewaretoken"') >= 7


def test_it_lists_only_the_staff_members_own_mailboxes(
    bob_client: Client, charlie_client: Client, mailbox: Mailbox
) -> None:
    assert mailbox.email_address not in bob_client.get("/profile/").content.decode()
    assert mailbox.email_address not in charlie_client.get("/profile/").content.decode()


@pytest.mark.parametrize("action", ACTIONS)
def test_it_hides_a_mailbox_from_everyone_but_its_owner(
    action: str, bob_client: Client, charlie_client: Client, mailbox: Mailbox
) -> None:
    for outsider in (charlie_client, bob_client):
        assert outsider.post(f"/mailboxes/{mailbox.public_id}/{action}/").status_code == 404
        assert outsider.get(f"/mailboxes/{mailbox.public_id}/edit/").status_code == 404
        assert outsider.post(f"/mailboxes/{mailbox.public_id}/edit/", {"permission": "send"}).status_code == 404
    after = Mailbox.unscoped.get(pk=mailbox.pk)
    assert (after.status, after.permission, after.is_default) == ("active", "send_and_read", True)
    assert not MailboxEvent.unscoped.filter(mailbox=mailbox).exists()


def test_it_requires_post_for_the_buttons(alice_client: Client, mailbox: Mailbox) -> None:
    for action in ACTIONS:
        assert alice_client.get(f"/mailboxes/{mailbox.public_id}/{action}/").status_code == 405


def test_it_makes_default_disables_enables_and_removes(alice: Staff, alice_client: Client, mailbox: Mailbox) -> None:
    other = make_mailbox(alice, "second@example.test")
    alice_client.post(f"/mailboxes/{other.public_id}/default/")
    assert Mailbox.unscoped.get(pk=other.pk).is_default and not Mailbox.unscoped.get(pk=mailbox.pk).is_default

    alice_client.post(f"/mailboxes/{mailbox.public_id}/disable/")
    assert Mailbox.unscoped.get(pk=mailbox.pk).status == "disabled"
    assert "Disabled" in alice_client.get("/profile/").content.decode()
    alice_client.post(f"/mailboxes/{mailbox.public_id}/enable/")
    assert Mailbox.unscoped.get(pk=mailbox.pk).status == "pending_authorization"  # never authorized

    alice_client.post(f"/mailboxes/{other.public_id}/remove/")
    assert not Mailbox.unscoped.filter(pk=other.pk).exists()
    removed = MailboxEvent.unscoped.get(email_address="second@example.test", kind="removed")
    assert removed.mailbox is None and removed.actor == alice
    assert MailboxEvent.unscoped.filter(email_address=mailbox.email_address, kind="disabled").exists()


def test_it_edits_the_policy_of_an_oauth_mailbox(alice: Staff, alice_client: Client) -> None:
    mailbox = make_mailbox(alice, "g@example.test", provider="google")
    page = alice_client.get(f"/mailboxes/{mailbox.public_id}/edit/").content.decode()
    assert "Edit Mailbox Connection" in page and "IMAP host" not in page
    response = alice_client.post(f"/mailboxes/{mailbox.public_id}/edit/", {
        "permission": "send", "post_processing": "delete", "display_name": "Alice", "from_address": ""})
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert (mailbox.permission, mailbox.post_processing, mailbox.display_name) == ("send", "delete", "Alice")
    assert mailbox.secret == "not-a-real-password"  # untouched


def test_it_sends_an_imap_mailbox_needing_a_password_to_edit_on_reconnect(
    alice: Staff, alice_client: Client
) -> None:
    mailbox = make_mailbox(alice, "x@example.test", status="needs_reauthorization")
    response = alice_client.post(f"/mailboxes/{mailbox.public_id}/reconnect/")
    assert response.status_code == 302 and response["Location"].endswith(f"/mailboxes/{mailbox.public_id}/edit/")


def test_it_never_renders_a_secret(alice: Staff, alice_client: Client) -> None:
    make_mailbox(alice, "s@example.test", secret="very-secret-password", access_token="very-secret-token")
    mailbox = Mailbox.unscoped.get(email_address="s@example.test")
    for url in ("/profile/", f"/mailboxes/{mailbox.public_id}/edit/"):
        page = alice_client.get(url).content.decode()
        assert "very-secret" not in page


def test_it_lists_mailboxes_in_admin_per_tenant_without_secrets(alice: Staff, charlie: Staff) -> None:
    from django.contrib.auth import get_user_model

    make_mailbox(alice, "adm-a@example.test", secret="admin-very-secret", access_token="admin-very-token")
    other = make_mailbox(charlie, "adm-c@example.test", secret="admin-very-secret")
    root = get_user_model().objects.create_superuser("root", "root@example.test", "root-pass-123")
    client = Client()
    client.force_login(root)
    listing = client.get("/admin/mailboxes/mailbox/").content.decode()
    assert "adm-a@example.test" in listing and "adm-c@example.test" in listing
    filtered = client.get(f"/admin/mailboxes/mailbox/?tenant__id__exact={charlie.tenant.pk}").content.decode()
    assert "adm-c@example.test" in filtered and "adm-a@example.test" not in filtered
    change = client.get(f"/admin/mailboxes/mailbox/{other.pk}/change/").content.decode()
    assert "adm-c@example.test" in change
    for page in (listing, change):
        assert "admin-very" not in page


def test_it_shows_the_reconnect_banner_on_every_page_to_the_owner_only(
    bob_client: Client, alice_client: Client, bob: Staff
) -> None:
    make_mailbox(bob, "lost@acme.test", status="needs_reauthorization")
    page = bob_client.get("/shipments/").content.decode()
    assert "lost@acme.test" in page and "needs to be reconnected" in page
    assert "lost@acme.test" not in alice_client.get("/shipments/").content.decode()


def test_it_lists_the_mailboxes_50_a_page_with_the_banners_of_all(alice: Staff, alice_client: Client) -> None:
    from mailboxes.views import PROFILE_PAGE_SIZE

    boxes = [make_mailbox(alice, f"box{i:02d}@example.test", status="disabled" if i % 2 else "active")
             for i in range(PROFILE_PAGE_SIZE + 3)]
    lost = make_mailbox(alice, "zz-lost@example.test", status="needs_reauthorization", last_error="password refused")
    first = alice_client.get("/profile/").content.decode()
    second = alice_client.get("/profile/?page=2").content.decode()
    for page in (first, second):
        # on every page: the banner of the mailbox to reconnect, even when its row is on another
        assert "zz-lost@example.test needs to be reconnected" in page and "password refused" in page
        assert "Active" in page or "Disabled" in page
    shown = [box for box in [*boxes, lost] if f'<tr data-mailbox="{box.public_id}"' in first]
    assert len(shown) == PROFILE_PAGE_SIZE
    rest = [box for box in [*boxes, lost] if box not in shown]
    assert len(rest) == 4 and all(f'<tr data-mailbox="{box.public_id}"' in second for box in rest)
    assert all(f'<tr data-mailbox="{box.public_id}"' not in second for box in shown)
    assert '?page=2' in first and "Mailboxes 1-50 of 54" in first and "Mailboxes 51-54 of 54" in second
    assert f'action="/mailboxes/{rest[0].public_id}/remove/"' in second
    assert alice_client.get("/profile/?page=99").status_code == 200  # the last page, as the shipment list does


def test_it_renders_the_profile_in_a_constant_number_of_queries(
    alice: Staff, alice_client: Client, django_assert_max_num_queries: object
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_mailbox(alice, "one@example.test", provider="google", access_token_expires_at=None,
                 status="needs_reauthorization")  # its banner is one query more: counted in `few`
    with CaptureQueriesContext(connection) as few:
        assert alice_client.get("/profile/").status_code == 200
    for i in range(30):
        make_mailbox(alice, f"more{i}@example.test", provider="google" if i % 2 else "imap",
                     status="needs_reauthorization" if i % 3 == 0 else "active", last_error="refused" if i % 3 else "")
    with django_assert_max_num_queries(len(few.captured_queries)):  # type: ignore[operator]
        page = alice_client.get("/profile/")
    assert page.status_code == 200 and "more29@example.test" in page.content.decode()


def test_it_asks_for_the_banner_only_when_the_users_query_says_there_is_one(
    bob: Staff, bob_client: Client, alice: Staff
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def page() -> tuple[str, list[str]]:
        with CaptureQueriesContext(connection) as ctx:
            html = bob_client.get("/shipments/").content.decode()
        return html, [q["sql"] for q in ctx.captured_queries if q["sql"].startswith('SELECT "mailboxes_mailbox"')]

    make_mailbox(alice, "alices-lost@acme.test", status="needs_reauthorization")  # someone else's
    box = make_mailbox(bob, "bob-box@acme.test")
    html, asked = page()
    assert "needs to be reconnected" not in html and asked == []
    Mailbox.objects.for_tenant(bob.tenant).filter(pk=box.pk).update(status="needs_reauthorization")
    html, asked = page()  # the very next page: the flag is read with the user, not cached
    assert "bob-box@acme.test</strong>" in html and "needs to be reconnected" in html and len(asked) == 1
    assert "alices-lost@acme.test" not in html
    Mailbox.objects.for_tenant(bob.tenant).filter(pk=box.pk).update(status="active")
    html, asked = page()
    assert "needs to be reconnected" not in html and asked == []


def test_the_empty_connect_dialog_is_rendered_once_and_its_csrf_token_works(
    alice: Staff, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dialog's 17 widgets were a quarter of the page's CPU: rendered once per process, with the
    # request's own CSRF token put in. Same HTML as the include, and the token passes the check.
    from mailboxes import views

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    monkeypatch.setattr(views, "_empty_dialogs", {})
    rendered = client.get("/profile/").content.decode()
    assert len(views._empty_dialogs) == 1
    cached = client.get("/profile/").content.decode()
    monkeypatch.setattr(views, "_empty_connect_dialog", lambda request, dialog: None)
    included = client.get("/profile/").content.decode()

    def dialog(page: str) -> str:
        found = re.search(r'<dialog id="mailbox-dialog".*?</script>', page, re.S)
        assert found is not None
        return CSRF.sub('value="TOKEN"', found.group(0))

    assert dialog(rendered) == dialog(cached) == dialog(included)
    inside = re.search(r'<dialog id="mailbox-dialog".*?</dialog>', cached, re.S)
    found = CSRF.search(inside.group(0)) if inside else None
    assert found is not None
    token = found.group(1)
    assert token != views._CSRF_STAND_IN and views._CSRF_STAND_IN not in cached
    # The form posted with the dialog's token gets past the CSRF check (a form error, not a 403).
    posted = client.post("/mailboxes/connect/", {"csrfmiddlewaretoken": token, "connect": "imap"})
    assert posted.status_code != 403


CSRF = re.compile(r'(?<=name="csrfmiddlewaretoken" )value="([^"]+)"')
