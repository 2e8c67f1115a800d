"""/metrics: Prometheus text behind a bearer token; counts from the database (right across
processes) and the in-process counters and poll histogram; the Celery worker's own exporter."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import requests
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from mailboxes import reading, services
from mailboxes.models import InboundMessage, Mailbox, OutboundMessage
from mailboxes.providers import AuthorizationError
from tests.factories import make_mailbox, make_staff, make_tenant
from tests.mailboxes.reading_support import append, make_reader, message
from tms import metrics as tms_metrics

TOKEN = "metrics-token-0123456789abcdef"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: Client) -> dict[Any, float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


@pytest.fixture
def metrics_on(settings: Any) -> Any:
    settings.METRICS_TOKEN = TOKEN
    return settings


def inbound(mailbox: Mailbox, uid: int, status: str) -> InboundMessage:
    return InboundMessage.objects.for_tenant(mailbox.tenant).create(
        mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=uid, message_id=f"<m{uid}@x>", raw=b"x", size=1,
        status=status,
    )


def outbound(mailbox: Mailbox, n: int, status: str) -> OutboundMessage:
    return OutboundMessage.objects.for_tenant(mailbox.tenant).create(
        mailbox=mailbox, from_address=mailbox.email_address, recipients=["a@example.net"],
        message_id=f"<o{n}@x>", raw=b"x", status=status,
    )


@pytest.mark.django_db
def test_it_is_off_without_a_token_and_refuses_a_wrong_one(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    refused = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


@pytest.mark.django_db
def test_it_counts_messages_queue_and_mailboxes_from_the_database_across_tenants(
    client: Client, metrics_on: Any,
) -> None:
    acme, globex = make_tenant("acme"), make_tenant("globex", "Globex")
    a = make_mailbox(make_staff(acme, "a@acme.test"), "a@acme.test")
    g = make_mailbox(make_staff(globex, "g@globex.test"), "g@globex.test", status="needs_reauthorization")
    make_mailbox(make_staff(globex, "h@globex.test"), "h@globex.test", status="error")
    before = scrape(client)
    for uid, status in enumerate(["processed", "processed", "failed", "quarantined"]):
        inbound(a, uid + 1, status)
    inbound(g, 1, "processed")
    for n, status in enumerate(["queued", "queued", "sending", "sent", "failed"]):
        outbound(a if n % 2 else g, n, status)

    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("tms_inbound_messages", status="processed") == 3
    assert grew("tms_inbound_messages", status="failed") == 1
    assert grew("tms_inbound_messages", status="quarantined") == 1
    assert value(after, "tms_send_queue_depth") == 3
    assert value(after, "tms_outbound_messages", status="failed") == 1
    assert value(after, "tms_send_queue_oldest_seconds") >= 0
    assert value(after, "tms_mailboxes_needing_reauthorization") == 1
    assert value(after, "tms_mailboxes", status="error") == 1
    assert value(after, "tms_mailboxes", status="active") == 1


@pytest.mark.django_db
def test_a_real_poll_feeds_the_counters_and_the_duration_histogram(
    client: Client, metrics_on: Any, reading_settings: Any, handler_log: Any, dovecot: Any,
) -> None:
    tenant = make_tenant("metr", "Metr")
    mailbox = make_reader(make_staff(tenant, "m@metr.test"), dovecot)
    for n in range(3):
        append(dovecot, mailbox.email_address, message(f"pickup {n}"))
    handler_log.raise_for.add("pickup 2")
    before = scrape(client)

    result = reading.mailbox_poll(mailbox_id=mailbox.pk)
    assert (result.fetched, result.pickup, result.failed) == (3, 2, 1)

    after = scrape(client)
    assert value(after, "tms_messages_fetched_total") - value(before, "tms_messages_fetched_total") == 3
    assert value(after, "tms_messages_processed_total", category="pickup") - value(
        before, "tms_messages_processed_total", category="pickup") == 2
    assert value(after, "tms_messages_failed_total") - value(before, "tms_messages_failed_total") == 1
    count = "tms_mailbox_poll_duration_seconds_count"
    assert value(after, count, outcome="ok") - value(before, count, outcome="ok") == 1
    assert value(after, "tms_mailbox_poll_duration_seconds_sum", outcome="ok") > value(
        before, "tms_mailbox_poll_duration_seconds_sum", outcome="ok")


@pytest.mark.django_db
def test_a_refused_token_refresh_is_counted(
    client: Client, metrics_on: Any, oauth_server: Any, certs: Any,
) -> None:
    metrics_on.GOOGLE_CLIENT_ID, metrics_on.GOOGLE_CLIENT_SECRET = "tms-test-client", "tms-test-secret"
    metrics_on.GOOGLE_TOKEN_URI = oauth_server.token_url
    metrics_on.MAILBOX_CA_FILE = str(certs.ca)
    address = "revoked-metrics@example.test"
    tokens = oauth_server.token_for(address)
    oauth_server.revoke(tokens.refresh_token)
    tenant = make_tenant("tok", "Tok")
    mailbox = make_mailbox(make_staff(tenant, "t@tok.test"), address, provider="google", secret=tokens.refresh_token,
                           access_token="")
    before = scrape(client)
    with pytest.raises(AuthorizationError):
        services.mailbox_access_token(mailbox)
    after = scrape(client)
    name = "tms_token_refresh_failures_total"
    assert value(after, name, provider="google", permanent="true") - value(
        before, name, provider="google", permanent="true") == 1
    assert value(after, "tms_mailboxes_needing_reauthorization") == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_serves_its_own_metrics_on_its_port(settings: Any) -> None:
    settings.METRICS_WORKER_PORT = 0
    assert tms_metrics.worker_exporter_start() is False
    port = free_port()
    assert tms_metrics.worker_exporter_start(port) is True
    from mailboxes.metrics import OUTBOUND_SENT

    OUTBOUND_SENT.labels(route="relay").inc()
    deadline = time.monotonic() + 5
    while True:
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert value(samples(text), "tms_outbound_sent_total", route="relay") >= 1
