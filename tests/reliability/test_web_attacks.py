"""Web attacks, each refused: CSRF on every form and API write and on the OAuth callbacks, open redirects
after login and OAuth, header injection into anything that reaches an e-mail header, and mailbox hosts
that point at private or local addresses. No traffic leaves loopback: the private-host tests assert
that no socket connects at all."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from mailboxes.models import Mailbox, OutboundMessage, TenantSendingMailbox
from shipments.models import Shipment
from tests.fixtures import PASSWORD
from tests.reliability.support import World, snapshot, summary
from tests.reliability.urls import filled, url_templates
from tms.accounts.models import Staff

EVIL = ("https://evil.example/", "//evil.example/", "/\\evil.example/", "\\\\evil.example", "https:evil.example",
        "http://testserver.evil.example/", " //evil.example", "/%2F/evil.example")


def staff_client(staff: Staff, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf, raise_request_exception=False)
    client.force_login(staff.user)
    return client


# ----------------------------------------------------------------------------- CSRF


def test_it_refuses_every_post_without_a_csrf_token(
    world: World, alice: Staff, capsys: pytest.CaptureFixture[str],
) -> None:
    """alice, logged in (the victim's browser), POSTs to every URL without the token: 403 each."""
    client = staff_client(alice, csrf=True)
    before = snapshot(world.tenant)
    statuses: Counter[int] = Counter()
    accepted = []
    posts = 0
    for template, params in url_templates():
        if template.startswith("admin/") and params:
            continue      # the admin is Django's own (CSRF-protected the same way); its login is below
        for url in (filled(template, params, world) if params else ["/" + template]):
            for method in ("post", "put", "patch", "delete"):
                if method != "post" and not url.startswith("/api/"):
                    continue
                response = getattr(client, method)(url, {} if method == "post" else "{}",
                                                   **({} if method == "post" else {"content_type": "application/json"}))
                posts += 1
                statuses[response.status_code] += 1
                if response.status_code != 403:
                    accepted.append(f"{method.upper()} {url} -> {response.status_code}")
    changed = [k for k, v in snapshot(world.tenant).items() if before[k] != v]
    summary(capsys, f"csrf: {posts} unsafe requests without a token, statuses {dict(statuses)}, "
                    f"{len(accepted)} accepted, {len(changed)} tables changed")
    assert not accepted, "\n".join(accepted)
    assert not changed


def test_it_refuses_a_mailbox_oauth_callback_whose_state_this_session_did_not_start(
    settings: Any, world: World, alice: Staff, bob: Staff, charlie: Staff,
) -> None:
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-secret"
    settings.GOOGLE_AUTH_URI = "https://127.0.0.1:9/authorize"      # never contacted: the browser would go there
    settings.GOOGLE_TOKEN_URI = "https://127.0.0.1:9/token"
    bob_client = staff_client(bob)
    response = bob_client.post("/mailboxes/connect/", {
        "provider": "google", "connect": "google", "permission": "send_and_read", "post_processing": "nothing",
        "email_address": "bob.google@acme-mail.test"})
    assert response.status_code == 302
    state = parse_qs(urlsplit(response["Location"]).query)["state"][0]
    boxes = Mailbox.unscoped.count()

    # Someone else's session (same company, or another) presents bob's state; bob presents a forged one.
    for client, presented in ((staff_client(alice), state), (staff_client(charlie), state),
                              (bob_client, state[:-2] + "xx"), (bob_client, "")):
        response = client.get("/mailboxes/oauth/callback/", {"state": presented, "code": "stolen-code"})
        assert response.status_code == 302 and response["Location"] == "/profile/"
        followed = client.get(response["Location"])
        assert "not valid" in followed.content.decode()
    assert Mailbox.unscoped.count() == boxes


def test_it_refuses_a_sending_consent_callback_with_a_forged_state(settings: Any, world: World, alice: Staff) -> None:
    client = staff_client(alice)
    before = list(TenantSendingMailbox.unscoped.values())
    response = client.get("/settings/sending/callback/", {"state": "forged", "code": "stolen-code",
                                                          "admin_consent": "True"})
    assert response.status_code == 302
    # (the settings page may make the company's empty row; nothing becomes usable)
    assert not [row for row in TenantSendingMailbox.unscoped.all() if row.usable]
    assert all(row in TenantSendingMailbox.unscoped.values() for row in before)


# ----------------------------------------------------------------------------- open redirects


def is_local(location: str) -> bool:
    parts = urlsplit(location)
    return (not parts.scheme and not parts.netloc and location.startswith("/")
            and not location.startswith("//") and not location.startswith("/\\") and "\\" not in location[:3])


def test_it_never_redirects_off_site_after_login_logout_or_oauth(
    settings: Any, world: World, alice: Staff, capsys: pytest.CaptureFixture[str],
) -> None:
    checked = 0
    for target in EVIL:
        anonymous = Client()
        response = anonymous.post(f"/login/?next={target}", {"username": alice.email, "password": PASSWORD,
                                                              "next": target})
        assert response.status_code == 302, target
        assert is_local(response["Location"]), (target, response["Location"])
        # already logged in (redirect_authenticated_user)
        response = anonymous.get("/login/", {"next": target})
        assert response.status_code == 302 and is_local(response["Location"]), (target, response["Location"])
        response = anonymous.post("/logout/", {"next": target})
        assert response.status_code in (200, 302)
        if response.status_code == 302:
            assert is_local(response["Location"]), (target, response["Location"])
        checked += 3

    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-secret"
    settings.GOOGLE_AUTH_URI = "https://127.0.0.1:9/authorize"
    client = staff_client(alice)
    for target in EVIL:
        response = client.post(f"/mailboxes/connect/?next={target}", {
            "provider": "google", "connect": "google", "permission": "send_and_read", "post_processing": "nothing",
            "email_address": "alice.g@acme-mail.test", "next": target})
        assert response["Location"].startswith(settings.GOOGLE_AUTH_URI)   # only the provider, never `next`
        state = parse_qs(urlsplit(response["Location"]).query)["state"][0]
        for params in ({"state": state, "error": "access_denied", "next": target},
                       {"state": "unknown", "code": "x", "next": target}):
            response = client.get("/mailboxes/oauth/callback/", params)
            assert response.status_code == 302 and is_local(response["Location"]), (target, response["Location"])
            checked += 1
        response = client.get("/settings/sending/callback/", {"state": "x", "next": target})
        assert response.status_code == 302 and is_local(response["Location"]), (target, response["Location"])
        checked += 1
    summary(capsys, f"open redirects: {len(EVIL)} hostile targets, {checked} redirects checked, 0 off-site")


# ----------------------------------------------------------------------------- header injection

BREAKS = ("\r\n", "\n", "\r", "\r\n\t", "\x00")


def injected(value: str) -> list[str]:
    return [f"Hello{br}Bcc: victim@evil.example" for br in BREAKS] + [f"Hello{BREAKS[0]}{BREAKS[0]}body takeover"]


def outbound_is_clean() -> list[str]:
    """Every message queued so far: no Bcc header, no evil recipient, no header line the sender did not write."""
    bad = []
    for row in OutboundMessage.unscoped.all():
        raw = bytes(row.raw or b"")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        names = {k.lower() for k in msg}
        if "bcc" in names or any("evil.example" in r for r in row.recipients) or b"body takeover" in raw.split(
                b"\r\n\r\n", 1)[0] or b"\nBcc:" in raw:
            bad.append(f"outbound {row.pk}: {raw[:300]!r}")
    return bad


def test_it_refuses_line_breaks_in_everything_that_reaches_a_mail_header(
    world: World, alice: Staff, bob: Staff, capsys: pytest.CaptureFixture[str],
) -> None:
    shipment = Shipment.unscoped.get(tenant=world.tenant)
    box = Mailbox.unscoped.get(email_address="bob.box@acme-mail.test")
    bob_client, alice_client = staff_client(bob), staff_client(alice)
    reply = f"/shipments/{shipment.public_id}/reply/"
    refused = 0
    attempts = 0
    problems: list[str] = []

    def stored_breaks() -> list[str]:
        names = [*Staff.unscoped.filter(tenant=world.tenant).values_list("name", flat=True),
                 *Mailbox.unscoped.filter(tenant=world.tenant).values_list("display_name", "from_address")]
        flat = [v for n in names for v in (n if isinstance(n, tuple) else (n,))]
        return [v for v in flat if any(c in v for c in "\r\n\x00")]

    def expect_refused(response: Any, what: str) -> None:
        """Refused: 400 (or 405 where the API is read-only, or the form shown again with its error), and
        nothing with a line break stored."""
        nonlocal refused, attempts
        attempts += 1
        shown_again = response.status_code == 200 and b"errorlist" in response.content
        if response.status_code in (400, 405) or shown_again:
            refused += 1
        else:
            problems.append(f"{what}: {response.status_code}")
        problems.extend(f"{what}: stored {v!r}" for v in stored_breaks())

    for value in injected("Hello"):
        expect_refused(bob_client.post(reply, {"to": "buyer@acmecust.test", "subject": value, "body": "hi"}),
                       f"reply subject {value!r}")
        expect_refused(bob_client.post(reply, {"to": f"buyer@acmecust.test{value[5:]}", "subject": "s", "body": "b"}),
                       f"reply to {value!r}")
        expect_refused(bob_client.patch(f"/api/mailboxes/{box.public_id}/", {"display_name": value},
                                        content_type="application/json"), f"API mailbox display_name {value!r}")
        expect_refused(bob_client.patch(f"/api/mailboxes/{box.public_id}/",
                                        {"from_address": f"bob@acme-mail.test{value[5:]}"},
                                        content_type="application/json"), f"API mailbox from_address {value!r}")
        expect_refused(alice_client.patch(f"/api/staff/{bob.public_id}/", {"name": value},
                                          content_type="application/json"), f"API staff name {value!r}")
        expect_refused(alice_client.post(f"/staff/{bob.public_id}/", {"name": value, "role": "staff",
                                                                       "active": "on"}), f"staff form name {value!r}")
    # Rows written before these checks (or by the admin) still cannot inject: the send refuses them.
    for model, pk, field in ((Staff, bob.pk, "name"), (Mailbox, box.pk, "display_name")):
        original = model.unscoped.filter(pk=pk).values_list(field, flat=True).get()
        model.unscoped.filter(pk=pk).update(**{field: "Bob\r\nBcc: victim@evil.example"})
        response = bob_client.post(reply, {"to": "buyer@acmecust.test", "subject": "s", "body": "b"})
        attempts += 1
        refused += response.status_code == 400
        if response.status_code != 400:
            problems.append(f"stored {model.__name__}.{field} with a line break: reply -> {response.status_code}")
        model.unscoped.filter(pk=pk).update(**{field: original})
    # Whatever was stored must still not reach a header: bob replies with clean input.
    response = bob_client.post(reply, {"to": "buyer@acmecust.test", "subject": "clean", "body": "hi"})
    problems += outbound_is_clean()
    summary(capsys, f"header injection: {attempts} attempts with CR/LF/NUL, {refused} refused with 400, "
                    f"{len(problems)} problems; clean reply -> {response.status_code}, "
                    f"{OutboundMessage.unscoped.count()} queued")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- private hosts

PRIVATE_HOSTS = ("127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "::1", "localhost", "0.0.0.0", "2130706433",
                 "192.168.1.10", "172.16.0.1", "[::ffff:127.0.0.1]", "100.64.0.1", "fd00::1", "127.1")


@contextmanager
def no_connections() -> Iterator[list[Any]]:
    """Record (and refuse) every socket connect meanwhile."""
    attempts: list[Any] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise ConnectionRefusedError("the test forbids connections here")

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    try:
        yield attempts
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]


def test_it_refuses_mailbox_hosts_at_private_addresses(
    settings: Any, world: World, bob: Staff, alice: Staff, capsys: pytest.CaptureFixture[str],
) -> None:
    from mailboxes.webhooks import webhook_url_validate
    from tms.net import NetError, resolve

    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = False
    client = staff_client(bob)
    box = Mailbox.unscoped.get(email_address="bob.box@acme-mail.test")
    before = Mailbox.unscoped.count()
    started = time.monotonic()
    refusals = 0
    with no_connections() as attempts:
        for host in PRIVATE_HOSTS:
            with pytest.raises(NetError):
                resolve(host, 993)
            refusals += 1
            for fields in ({"imap_host": host, "smtp_host": host, "permission": "send_and_read"},
                           {"imap_host": "", "smtp_host": host, "permission": "send"}):
                body = {"email_address": "bob.x@acme-mail.test", "password": "p", "username": "bob.x", **fields}
                response = client.post("/api/mailboxes/", body, content_type="application/json")
                assert response.status_code == 400, (host, fields, response.content[:300])
                response = client.post("/mailboxes/connect/", {"provider": "imap", "connect": "imap",
                                                               "post_processing": "nothing", **body})
                assert response.status_code == 400, (host, fields)
                refusals += 2
            response = client.patch(f"/api/mailboxes/{box.public_id}/", {"smtp_host": host, "imap_host": host},
                                    content_type="application/json")
            assert response.status_code == 400, (host, response.content[:300])
            refusals += 1
            with pytest.raises(Exception):  # noqa: B017 - ValidationError or NetError, both refuse
                webhook_url_validate(f"https://{host}/hook")
            refusals += 1
    assert Mailbox.unscoped.count() == before
    box.refresh_from_db()
    assert box.smtp_host == "127.0.0.1" and box.imap_port == 993
    summary(capsys, f"private hosts: {len(PRIVATE_HOSTS)} hosts, {refusals} refusals (resolve, API, form, edit, "
                    f"webhook), {len(attempts)} connection attempts, {time.monotonic() - started:.1f} s")
    assert not attempts, attempts
