"""The company sending mailbox (Microsoft 365 with admin consent) and the webhook after send."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.core.exceptions import ValidationError
from django.test import Client

from mailboxes import sending, webhooks
from mailboxes.models import TenantSendingMailbox, TenantWebhook
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db
DIRECTORY = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _follow(ca: Any, url: str) -> str:
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(url, allow_redirects=False, verify=str(ca), timeout=10)
    assert r.status_code == 302, r.text[:300]
    return str(r.headers["Location"])


def _local(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


@pytest.fixture
def ms_settings(send_settings: Any, oauth_server: Any, smtp_server: Any) -> Any:
    send_settings.SITE_URL = "http://testserver"
    send_settings.MICROSOFT_CLIENT_ID = "ms-client-id"
    send_settings.MICROSOFT_CLIENT_SECRET = "ms-secret"
    send_settings.MICROSOFT_AUTHORITY = oauth_server.ms_authority
    send_settings.MICROSOFT_SMTP_HOST = "127.0.0.1"
    send_settings.MICROSOFT_SMTP_PORT = smtp_server.submission_port
    return send_settings


def test_only_a_companys_admins_see_its_sending_settings(
    alice_client: Client, bob_client: Client, charlie_client: Client, acme: Any
) -> None:
    alice_client.post("/settings/sending/", {"action": "mailbox", "kind": "microsoft", "directory_id": DIRECTORY,
                                             "sending_address": "ops@acme.test"})
    assert b"ops@acme.test" in alice_client.get("/settings/sending/").content
    assert bob_client.get("/settings/sending/").status_code == 403
    outsider = charlie_client.get("/settings/sending/")
    assert outsider.status_code == 200 and b"ops@acme.test" not in outsider.content


def test_an_admin_connects_the_company_mailbox_with_admin_consent_and_system_mail_uses_it(
    ms_settings: Any, alice_client: Client, bob: Staff, oauth_server: Any, smtp_server: Any, certs: Any
) -> None:
    response = alice_client.post("/settings/sending/", {
        "action": "mailbox", "kind": "microsoft", "directory_id": DIRECTORY, "sending_address": "ops@acme.test"})
    assert response.status_code == 302
    company = TenantSendingMailbox.objects.for_tenant(bob.tenant).get()
    assert company.status == TenantSendingMailbox.Status.PENDING_CONSENT

    consent = alice_client.post("/settings/sending/consent/")
    assert consent.status_code == 302 and f"/{DIRECTORY}/oauth2/v2.0/authorize" in consent["Location"]
    assert "prompt=admin_consent" in consent["Location"]
    callback = _follow(certs.ca, consent["Location"])
    alice_client.get(_local(callback))

    company.refresh_from_db()
    assert company.status == TenantSendingMailbox.Status.ACTIVE and company.refresh_token
    page = alice_client.get("/settings/sending/")
    assert b"Active" in page.content and company.refresh_token.encode() not in page.content

    outbound = sending.message_queue(tenant=bob.tenant, staff=bob, to=["carrier@example.test"], subject="Company",
                                     body_text="via the company mailbox", enqueue=False)
    assert outbound.route == "tenant"
    assert sending.message_deliver(outbound_id=outbound.pk).status == "sent"
    got = smtp_server.wait_for(lambda m: m.message_id == outbound.message_id)
    msg = got.message()
    assert got.auth_user == "ops@acme.test"
    assert msg["From"].addresses[0].display_name == "Bob Dispatch via Acme Logistics"
    assert msg["Reply-To"].addresses[0].addr_spec == "bob@acme.test"


def test_a_callback_with_a_foreign_state_is_refused(ms_settings: Any, alice_client: Client, acme: Any) -> None:
    alice_client.post("/settings/sending/", {"action": "mailbox", "kind": "microsoft", "directory_id": DIRECTORY,
                                             "sending_address": "ops@acme.test"})
    alice_client.get("/settings/sending/callback/?code=abc&state=forged")
    assert TenantSendingMailbox.objects.for_tenant(acme).get().status != TenantSendingMailbox.Status.ACTIVE


def test_choosing_none_disables_it(ms_settings: Any, alice_client: Client, acme: Any) -> None:
    alice_client.post("/settings/sending/", {"action": "mailbox", "kind": "microsoft", "directory_id": DIRECTORY,
                                             "sending_address": "ops@acme.test"})
    alice_client.post("/settings/sending/", {"action": "mailbox", "kind": "none"})
    assert TenantSendingMailbox.objects.for_tenant(acme).get().status == TenantSendingMailbox.Status.DISABLED


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((dict(self.headers), body))
        self.send_response(_Hook.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received, _Hook.status = [], 200
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_the_webhook_gets_a_signed_event_after_a_send(
    send_settings: Any, bob: Staff, smtp_server: Any, hook_server: str, django_capture_on_commit_callbacks: Any
) -> None:
    send_settings.CELERY_TASK_ALWAYS_EAGER = True
    send_settings.RELAY_SMTP_URL = f"smtp://127.0.0.1:{smtp_server.sink_port}"
    secret = "a-long-webhook-secret"
    webhooks.webhook_save(tenant=bob.tenant, url=hook_server, secret=secret)
    outbound = sending.message_queue(tenant=bob.tenant, staff=bob, to=["c@example.test"], subject="Hooked",
                                     body_text="b", related="shipment:1", enqueue=False)
    with django_capture_on_commit_callbacks(execute=True):
        sending.message_deliver(outbound_id=outbound.pk)

    assert len(_Hook.received) == 1
    headers, body = _Hook.received[0]
    expected = hmac.new(secret.encode(), f"{headers['X-TMS-Timestamp']}.".encode() + body, hashlib.sha256)
    assert headers["X-TMS-Signature"] == f"sha256={expected.hexdigest()}"
    event = json.loads(body)
    assert event["event"] == "message.sent" and event["message_id"] == outbound.message_id
    assert event["related"] == "shipment:1"
    assert TenantWebhook.objects.for_tenant(bob.tenant).get().last_status == "HTTP 200"


def test_a_failing_webhook_is_retried_and_a_client_error_is_not(send_settings: Any, bob: Staff, hook_server: str) -> None:
    send_settings.RELAY_SMTP_URL = "smtp://127.0.0.1:25"
    webhooks.webhook_save(tenant=bob.tenant, url=hook_server, secret="a-long-webhook-secret")
    outbound = sending.message_queue(tenant=bob.tenant, staff=bob, to=["c@example.test"], subject="s",
                                     body_text="b", enqueue=False)
    _Hook.status = 503
    with pytest.raises(webhooks.WebhookError) as caught:
        webhooks.webhook_deliver(outbound_id=outbound.pk, event="message.sent")
    assert caught.value.temporary
    _Hook.status = 404
    with pytest.raises(webhooks.WebhookError) as caught:
        webhooks.webhook_deliver(outbound_id=outbound.pk, event="message.sent")
    assert not caught.value.temporary


def test_the_webhook_url_goes_through_the_private_address_guard(send_settings: Any, acme: Any) -> None:
    send_settings.MAILBOX_ALLOW_PRIVATE_HOSTS = False
    for url in ["https://127.0.0.1/hook", "https://10.1.2.3/x", "http://example.com/hook"]:
        with pytest.raises(ValidationError):
            webhooks.webhook_save(tenant=acme, url=url, secret="a-long-webhook-secret")
    assert not TenantWebhook.objects.for_tenant(acme).exists()
